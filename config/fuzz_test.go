package config

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzLoad(f *testing.F) {
	if data, err := os.ReadFile(examplePath); err == nil {
		f.Add(data)
	}
	f.Add([]byte(installTemplate))
	f.Add([]byte(""))
	f.Add([]byte("[server]\nprot = 1\n"))
	f.Add([]byte("[server]\nport = 70000\n[[apps]]\napp_id = \"\"\n"))
	f.Add([]byte("[[apps]]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"s\"\nallowed_origins = []\n[[apps]]\n[apps.rate_limiting]\nenabled = true\n"))
	f.Add([]byte("apps = 5\n"))
	f.Add([]byte("[apps]\nkey = 1\n"))
	f.Add([]byte("[scaling]\nenabled = true\n[scaling.redis]\nurl = \"redis://u:p@h:1/2?password=x\"\n"))
	f.Add([]byte("[scaling]\nenabled = true\n[scaling.redis]\nmode = \"sentinel\"\naddrs = [\"s:26379\"]\nmaster_name = \"m\"\nsentinel_password = \"p\"\n"))
	f.Add([]byte("[server.tls]\ncert = \"c\"\n[log]\nlevel = \"x\"\n"))
	f.Add([]byte("[\"server\"]\n\"po\\u0072t\" = 1\n"))
	f.Add([]byte("server = { port = 1, tls = { cert = 1 } }\n"))

	// One directory per process: calls within a process run one at a time,
	// and t.TempDir per call would dominate the cost.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "reverb.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, nil)
		if err != nil {
			return
		}
		if len(c.Apps) == 0 {
			t.Fatal("Load succeeded without apps")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load succeeded but Validate fails: %v", err)
		}
		o := c.Options()
		if len(o.Apps) != len(c.Apps) {
			t.Fatalf("Options has %d apps, Config %d", len(o.Apps), len(c.Apps))
		}
		// The redacted dump is itself a loadable configuration.
		out := c.Redacted()
		p2 := filepath.Join(dir, "redacted.toml")
		if err := os.WriteFile(p2, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p2, nil); err != nil {
			t.Fatalf("Redacted output does not load: %v\n%s", err, out)
		}
	})
}
