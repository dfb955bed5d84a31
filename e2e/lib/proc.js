// Spawns a child process whose output is kept (the last MAX_LOG characters)
// for failure messages, and whose exit is observable.

import { spawn } from 'node:child_process';

export const MAX_LOG = 200_000;

// spawnLogged(bin, args, options) -> { proc, logs(), exited(), exitPromise, append(text), terminate() }
//   logs()      the output so far (stdout and stderr interleaved)
//   exited()    null while running, else { code, signal } or { error }
//   exitPromise resolves to exited() when the process ends
//   terminate() SIGTERM, SIGKILL after 3 s, resolves once it has exited
export function spawnLogged(bin, args, options = {}) {
  let logs = '';
  const append = (chunk) => {
    logs += chunk.toString();
    if (logs.length > MAX_LOG) logs = logs.slice(-MAX_LOG);
  };
  const proc = spawn(bin, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.on('data', append);
  proc.stderr.on('data', append);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    proc.on('error', (err) => {
      exited = { error: err };
      append(`spawn error: ${err.message}\n`);
      resolve(exited);
    });
  });
  // terminate sends SIGTERM, then SIGKILL after 3 s, and waits for the exit.
  const terminate = async () => {
    if (exited !== null) return;
    try {
      process.kill(proc.pid, 'SIGTERM');
    } catch {}
    const t = setTimeout(() => {
      try {
        if (exited === null) process.kill(proc.pid, 'SIGKILL');
      } catch {}
    }, 3000);
    await exitPromise;
    clearTimeout(t);
  };
  return { proc, logs: () => logs, exited: () => exited, exitPromise, append, terminate };
}
