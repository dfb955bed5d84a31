// Reverb dashboard: polls api/stats every second, computes rates from the
// deltas of the counters, draws per-app charts as inline SVG, and lists each
// app's channels (api/channels) with presence members. No dependencies.
'use strict';

(function () {
  const POLL_MS = 1000;
  const WINDOW_MS = 120 * 1000; // charts show at most the last two minutes
  const MIN_WINDOW_MS = 30 * 1000; // and at least 30 s, so a fresh page is not a sliver
  const MAX_MEMBERS = 24;       // member chips shown per channel
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const COLORS = { conn: 'var(--accent)', subs: '#8fb1ff', in: 'var(--in)', out: 'var(--out)' };

  let prev = null;                 // previous /api/stats body
  const history = new Map();       // app_id -> [{t, conns, subs, in, out}]
  const totalHist = [];            // [{t, in, out, bin, bout}]
  const cards = new Map();         // app_id -> card elements

  // h builds an element; string children become text nodes (never HTML).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v; else el.setAttribute(k, String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function s(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }
  // put replaces el's children, skipping null, undefined and false.
  function put(el, ...children) {
    el.replaceChildren(...children.flat().filter(c => c !== undefined && c !== null && c !== false));
  }
  function setText(id, text) {
    const el = document.getElementById(id);
    if (el && el.textContent !== String(text)) el.textContent = String(text);
  }

  const intFmt = new Intl.NumberFormat('en-US');
  function fmtInt(n) { return intFmt.format(n); }
  // Axis labels are compact (950, 2.5K, 10K, 1.2M) so that they stay short.
  const axisFmt = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 });
  function fmtAxis(v) { return axisFmt.format(v); }
  function fmtRate(r) {
    if (r === null || r === undefined || !isFinite(r)) return '–';
    if (r >= 1000) return intFmt.format(Math.round(r));
    if (r >= 10) return r.toFixed(0);
    return r.toFixed(1);
  }
  function fmtBytes(b) {
    if (b === null || b === undefined || !isFinite(b)) return '–';
    const units = ['B/s', 'KB/s', 'MB/s', 'GB/s'];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (b >= 100 || i === 0 ? b.toFixed(0) : b.toFixed(1)) + '\u00a0' + units[i]; // no break inside a figure
  }
  function fmtDuration(sec) {
    sec = Math.floor(sec);
    const d = Math.floor(sec / 86400), hh = Math.floor(sec % 86400 / 3600),
      m = Math.floor(sec % 3600 / 60), ss = sec % 60;
    if (d) return d + 'd ' + hh + 'h';
    if (hh) return hh + 'h ' + m + 'm';
    if (m) return m + 'm ' + ss + 's';
    return ss + 's';
  }
  function memberLabel(id) { return typeof id === 'string' ? id : JSON.stringify(id); }

  // rate returns the per-second increase of a counter between two polls.
  function rate(cur, old, dt) {
    if (old === undefined || dt <= 0) return null;
    return Math.max(0, (cur - old) / dt);
  }

  // niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function fmtAgo(ms) {
    const sec = Math.round(ms / 1000);
    if (sec < 60) return '−' + sec + ' s';
    if (sec % 60 === 0) return '−' + sec / 60 + ' min';
    return '−' + Math.floor(sec / 60) + 'm ' + sec % 60 + 's';
  }

  // chart draws series (each {key, color, area}) of points over the last
  // span ms (the history so far, between MIN_WINDOW_MS and WINDOW_MS) into
  // fig, after caption. The drawing is as wide as the figure, one unit per
  // pixel, and its left margin fits the widest y-axis label as rendered.
  function chart(fig, caption, points, series, now) {
    const H = 150, R = 6, T = 8, B = 18, GAP = 4;
    const span = Math.min(WINDOW_MS, Math.max(MIN_WINDOW_MS, points.length ? now - points[0].t : 0));
    const svg = s('svg', { class: 'chart', preserveAspectRatio: 'none', role: 'img' });
    put(fig, caption, svg);
    const W = Math.max(120, Math.round(svg.getBoundingClientRect().width) || 600);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    let max = 0;
    for (const p of points) for (const se of series) if (p[se.key] !== null) max = Math.max(max, p[se.key]);
    max = niceMax(max);
    const yLabels = [0, 0.5, 1].map(f => {
      const label = s('text', { class: 'axis y', 'text-anchor': 'end' });
      label.textContent = fmtAxis(max * f);
      svg.append(label);
      return [f, label];
    });
    let labelW = 0;
    for (const [, label] of yLabels) labelW = Math.max(labelW, label.getComputedTextLength());
    const L = Math.ceil(labelW) + GAP + 2;
    const x = t => L + (W - L - R) * (1 - (now - t) / span);
    const y = v => T + (H - T - B) * (1 - v / max);
    for (const [f, label] of yLabels) {
      const yy = y(max * f);
      svg.insertBefore(s('line', { class: 'gridline', x1: L, x2: W - R, y1: yy, y2: yy }), svg.firstChild);
      label.setAttribute('x', L - GAP);
      label.setAttribute('y', yy + 3);
    }
    for (const [t, txt, anchor] of [[now - span, fmtAgo(span), 'start'], [now - span / 2, fmtAgo(span / 2), 'middle'], [now, 'now', 'end']]) {
      const label = s('text', { class: 'axis x', x: x(t), y: H - 4, 'text-anchor': anchor });
      label.textContent = txt;
      svg.append(label);
    }
    for (const se of series) {
      const pts = points.filter(p => p[se.key] !== null && now - p.t <= span);
      if (pts.length === 0) continue;
      const coords = pts.map(p => `${x(p.t).toFixed(1)},${y(p[se.key]).toFixed(1)}`);
      if (pts.length === 1) coords.push(`${x(now).toFixed(1)},${y(pts[0][se.key]).toFixed(1)}`);
      if (se.area) {
        const first = coords[0].split(',')[0], last = coords[coords.length - 1].split(',')[0];
        svg.append(s('polygon', { class: 'area', fill: se.color, points: `${first},${y(0)} ${coords.join(' ')} ${last},${y(0)}` }));
      }
      svg.append(s('polyline', { class: 'line', stroke: se.color, points: coords.join(' ') }));
    }
    return svg;
  }

  // recordLabelLayout writes where each chart's axis labels were rendered,
  // in pixels from the chart's left edge (data-left, data-right; the chart
  // is data-width wide), for tests to check that none is clipped.
  function recordLabelLayout() {
    for (const svg of document.querySelectorAll('svg.chart')) {
      const box = svg.getBoundingClientRect();
      svg.dataset.width = box.width.toFixed(1);
      for (const label of svg.querySelectorAll('text.axis')) {
        const r = label.getBoundingClientRect();
        label.dataset.left = (r.left - box.left).toFixed(1);
        label.dataset.right = (r.right - box.left).toFixed(1);
      }
    }
  }

  function legend(items) {
    return h('span', { class: 'legend' }, items.map(([label, color]) => {
      const i = h('i');
      i.style.background = color;
      return h('span', null, i, label);
    }));
  }

  function appCard(id) {
    let c = cards.get(id);
    if (c) return c;
    const stats = h('div', { class: 'app-stats' });
    const connFig = h('figure');
    const msgFig = h('figure');
    const channels = h('div', { class: 'channels' }, h('div', { class: 'empty' }, 'Loading channels…'));
    const el = h('article', { class: 'card app', 'data-app': id },
      h('div', { class: 'app-head' }, h('h2', null, 'App ', h('code', null, id)), stats),
      h('div', { class: 'charts' }, connFig, msgFig),
      h('h3', null, 'Channels'),
      channels);
    document.getElementById('apps').append(el);
    c = { el, stats, connFig, msgFig, channels };
    cards.set(id, c);
    return c;
  }

  function renderApp(a, hist, now) {
    const c = appCard(a.app_id);
    const last = hist.length ? hist[hist.length - 1] : null;
    put(c.stats,
      h('span', null, h('b', { class: 'app-connections' }, fmtInt(a.connections)), ' connections'),
      h('span', null, h('b', { class: 'app-subscribed' }, fmtInt(a.subscribed)), ' subscribed'),
      h('span', null, h('b', { class: 'app-channels' }, fmtInt(a.channels)), ' channels'),
      h('span', null, h('b', null, fmtRate(last ? last.in : null)), ' msg/s in'),
      h('span', null, h('b', null, fmtRate(last ? last.out : null)), ' msg/s out'));
    chart(c.connFig,
      h('figcaption', null, h('span', null, 'Connections'), legend([['open', COLORS.conn], ['subscribed', COLORS.subs]])),
      hist, [{ key: 'subs', color: COLORS.subs }, { key: 'conns', color: COLORS.conn, area: true }], now);
    chart(c.msgFig,
      h('figcaption', null, h('span', null, 'Messages / s'), legend([['in', COLORS.in], ['out', COLORS.out]])),
      hist, [{ key: 'in', color: COLORS.in }, { key: 'out', color: COLORS.out, area: true }], now);
  }

  function renderChannels(appID, body) {
    const c = appCard(appID);
    if (!body.channels.length) {
      put(c.channels, h('div', { class: 'empty' }, 'No occupied channels.'));
      return;
    }
    const rows = body.channels.map(ch => {
      let members = h('span', { class: 'muted' }, '—');
      if (ch.kind === 'presence') {
        const list = ch.members || [];
        members = h('div', { class: 'members' },
          list.slice(0, MAX_MEMBERS).map(m => h('span', { class: 'member', 'data-user': memberLabel(m.id) }, memberLabel(m.id))),
          list.length > MAX_MEMBERS ? h('span', { class: 'muted' }, `+${list.length - MAX_MEMBERS} more`) : null);
      }
      return h('tr', { class: 'channel', 'data-channel': ch.name },
        h('td', null, h('code', { class: 'channel-name' }, ch.name)),
        h('td', null, h('span', { class: 'kind', 'data-kind': ch.kind }, ch.kind + (ch.cache ? ' · cache' : ''))),
        h('td', { class: 'num subs' }, fmtInt(ch.subscription_count)),
        h('td', { class: 'num users' }, ch.kind === 'presence' ? fmtInt(ch.user_count) : '—'),
        h('td', null, members));
    });
    put(c.channels,
      h('table', { class: 'grid' },
        h('colgroup', null, h('col', { class: 'c-name' }), h('col', { class: 'c-kind' }), h('col', { class: 'c-num' }),
          h('col', { class: 'c-num' }), h('col')),
        h('thead', null, h('tr', null, h('th', null, 'Channel'), h('th', null, 'Type'),
          h('th', { class: 'num' }, 'Subscribers'), h('th', { class: 'num' }, 'Users'), h('th', { class: 'members-h' }, 'Members'))),
        h('tbody', null, rows)),
      body.truncated ? h('div', { class: 'muted' }, `Showing ${body.channels.length} of ${fmtInt(body.total)} channels (most subscribed first).`) : null);
  }

  function renderNodes(nodes, now) {
    const known = v => (v === undefined || v === null || v === '' || v < 0) ? '—' : v;
    const tbody = document.querySelector('#nodes tbody');
    put(tbody, ...nodes.map(n => h('tr', { class: 'node-row', 'data-node': n.id },
      h('td', null, h('code', null, n.id), n.self ? h('span', { class: 'hint' }, 'this node') : null),
      h('td', null, known(n.hostname)),
      h('td', null, n.address ? h('code', null, n.address) : '—'),
      h('td', null, known(n.version)),
      h('td', { class: 'num' }, n.uptime_seconds ? fmtDuration(n.uptime_seconds) : '—'),
      h('td', { class: 'num' }, n.loops >= 0 ? fmtInt(n.loops) : '—'),
      h('td', { class: 'num' }, n.connections >= 0 ? fmtInt(n.connections) : '—'),
      h('td', null, h('span', { class: 'pill', 'data-status': n.status }, n.status),
        n.last_seen && !n.self ? h('span', { class: 'hint' }, 'seen ' + fmtDuration(Math.max(0, now - Date.parse(n.last_seen)) / 1000) + ' ago') : null))));
  }

  function renderCounters(c, cluster, webhooks) {
    const group = (title, entries) => h('div', null, h('h4', null, title),
      entries.length ? h('dl', null, entries.map(([k, v]) => [h('dt', null, k), h('dd', null, fmtInt(v))]))
        : h('div', { class: 'muted' }, 'none'));
    const sorted = m => Object.entries(m || {}).sort((a, b) => a[0].localeCompare(b[0], 'en', { numeric: true }));
    put(document.getElementById('counters'),
      group('Handshake failures', sorted(c.handshake_failures)),
      group('Close codes sent', sorted(c.server_closes)),
      group('pusher:error codes sent', sorted(c.errors_sent)),
      group('Limits', [
        ['slow consumers', c.slow_consumer_disconnects],
        ['rate limited', c.rate_limited_messages],
        ['client events dropped', c.client_events_dropped],
        ['connections refused', c.connections_refused],
        ['API queue full', c.api_queue_full]]),
      cluster ? group('Redis', [
        ['published', cluster.publishes],
        ['received', cluster.receives],
        ['dropped', cluster.dropped],
        ['invalid', cluster.invalid],
        ['reconnects', cluster.reconnects],
        ['peers', cluster.peers]]) : null,
      ...(webhooks ? webhooks.endpoints : []).map(e => group('Webhooks ' + e.app_id + ' ' + e.url, [
        ['queued', e.queued],
        ['in flight', e.in_flight],
        ['delivered', e.delivered],
        ['retries', e.retries],
        ['failed attempts', Object.values(e.failures || {}).reduce((a, b) => a + b, 0)],
        ['failed events', e.failed],
        ['dropped', Object.values(e.dropped || {}).reduce((a, b) => a + b, 0)]])));
  }

  function update(st) {
    const dt = prev ? (st.time - prev.time) / 1000 : 0;
    const fresh = !prev || st.time > prev.time;
    const prevApps = new Map((prev ? prev.apps : []).map(a => [a.app_id, a]));
    if (fresh) {
      for (const a of st.apps) {
        const old = prevApps.get(a.app_id);
        let hist = history.get(a.app_id);
        if (!hist) history.set(a.app_id, hist = []);
        hist.push({
          t: st.time, conns: a.connections, subs: a.subscribed,
          in: old ? rate(a.messages_received, old.messages_received, dt) : null,
          out: old ? rate(a.messages_sent, old.messages_sent, dt) : null,
        });
        while (hist.length && st.time - hist[0].t > WINDOW_MS + POLL_MS) hist.shift();
      }
      const t = st.totals, ot = prev ? prev.totals : {};
      totalHist.push({
        t: st.time,
        in: rate(t.messages_received, ot.messages_received, dt), out: rate(t.messages_sent, ot.messages_sent, dt),
        bin: rate(t.bytes_received, ot.bytes_received, dt), bout: rate(t.bytes_sent, ot.bytes_sent, dt),
      });
      while (totalHist.length > 2) totalHist.shift();
      prev = st;
    }
    const self = st.nodes[0] || {};
    setText('node-id', st.node);
    setText('meta-version', 'v' + String(self.version || '').replace(/^v/, ''));
    setText('meta-uptime', 'up ' + fmtDuration(self.uptime_seconds || 0));
    setText('meta-loops', st.loops + (st.loops === 1 ? ' loop' : ' loops'));
    const pill = document.getElementById('status');
    pill.dataset.status = st.status;
    setText('status', st.status);

    const tl = totalHist[totalHist.length - 1] || {};
    setText('kpi-connections', fmtInt(st.connections));
    setText('kpi-app-connections', fmtInt(st.totals.connections));
    setText('kpi-subscribed', fmtInt(st.totals.subscribed));
    setText('kpi-channels', fmtInt(st.totals.channels));
    setText('kpi-msg-in', fmtRate(tl.in));
    setText('kpi-msg-out', fmtRate(tl.out));
    setText('kpi-bytes', fmtBytes(tl.bin) + ' / ' + fmtBytes(tl.bout));

    for (const a of st.apps) renderApp(a, history.get(a.app_id) || [], st.time);
    recordLabelLayout();
    renderNodes(st.nodes, st.time);
    renderCounters(st.counters, st.cluster, st.webhooks);
    setText('updated', 'Updated ' + new Date(st.time).toLocaleTimeString('en-GB'));
  }

  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-store' });
    if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
    return r.json();
  }

  async function poll() {
    try {
      const st = await getJSON('api/stats');
      update(st);
      await Promise.all(st.apps.map(async a => {
        const body = await getJSON('api/channels?app_id=' + encodeURIComponent(a.app_id));
        renderChannels(a.app_id, body);
      }));
    } catch (e) {
      const pill = document.getElementById('status');
      pill.dataset.status = 'offline';
      pill.textContent = 'offline';
      setText('updated', 'Cannot reach the server: ' + e.message);
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
