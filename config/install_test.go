package config

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
)

func TestInstallFormats(t *testing.T) {
	// Several deterministic streams: the formats must hold for each.
	for seed := range uint64(20) {
		var key [32]byte
		key[0] = byte(seed)
		path := filepath.Join(t.TempDir(), "reverb.toml")
		r, err := Install(path, rand.NewChaCha8(key))
		if err != nil {
			t.Fatalf("seed %d: Install: %v", seed, err)
		}
		if !regexp.MustCompile(`^[1-9][0-9]{5}$`).MatchString(r.AppID) {
			t.Errorf("seed %d: AppID = %q, want 100000..999999", seed, r.AppID)
		}
		for name, v := range map[string]string{"Key": r.Key, "Secret": r.Secret} {
			if !regexp.MustCompile(`^[a-z0-9]{20}$`).MatchString(v) {
				t.Errorf("seed %d: %s = %q, want 20 of [a-z0-9]", seed, name, v)
			}
		}
		if r.Key == r.Secret {
			t.Errorf("seed %d: key and secret are equal", seed)
		}
		if r.Path != path {
			t.Errorf("Path = %q, want %q", r.Path, path)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want 0600", st.Mode().Perm())
		}
		// The file loads and holds the generated app with default settings.
		c, err := Load(path, nil)
		if err != nil {
			t.Fatalf("Load(installed): %v", err)
		}
		if want := NewApp(r.AppID, r.Key, r.Secret); len(c.Apps) != 1 || !equalApp(c.Apps[0], want) {
			t.Errorf("installed apps = %+v, want [%+v]", c.Apps, want)
		}
		c.Apps, c.origins = nil, nil
		if !equalConfig(c, Default()) {
			t.Errorf("installed file is not at the defaults: %+v", c)
		}
	}
}

func TestInstallKnownAnswer(t *testing.T) {
	// app id: 0x0DBB9F = 899999 -> 999999 (after one rejected triple);
	// key: bytes 0..19 -> a..t; secret: 252 and 255 are rejected, then
	// 26..35 -> 0..9 twice.
	var in []byte
	in = append(in, 0xff, 0xff, 0xff) // rejected (>= 16777216 - 16777216%900000)
	in = append(in, 0x0d, 0xbb, 0x9f)
	for i := range 20 {
		in = append(in, byte(i))
	}
	secret := []byte{252, 255}
	for range 2 {
		for i := 26; i < 36; i++ {
			secret = append(secret, byte(i))
		}
	}
	in = append(in, secret[:20]...)
	in = append(in, secret[20:]...)
	in = append(in, make([]byte, 18)...) // the rest of the second read
	path := filepath.Join(t.TempDir(), "reverb.toml")
	r, err := Install(path, bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, got, want string }{
		{"AppID", r.AppID, "999999"},
		{"Key", r.Key, "abcdefghijklmnopqrst"},
		{"Secret", r.Secret, "01234567890123456789"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	r2, err := Install(filepath.Join(t.TempDir(), "reverb.toml"), bytes.NewReader(make([]byte, 64)))
	if err != nil {
		t.Fatal(err)
	}
	if r2.AppID != "100000" || r2.Key != "aaaaaaaaaaaaaaaaaaaa" {
		t.Errorf("zero stream: AppID %q Key %q, want 100000 and a...", r2.AppID, r2.Key)
	}
}

func TestInstallEnvLines(t *testing.T) {
	r := &InstallResult{AppID: "123456", Key: "kkkkkkkkkkkkkkkkkkkk", Secret: "ssssssssssssssssssss"}
	want := []string{
		"BROADCAST_CONNECTION=reverb",
		"REVERB_APP_ID=123456",
		"REVERB_APP_KEY=kkkkkkkkkkkkkkkkkkkk",
		"REVERB_APP_SECRET=ssssssssssssssssssss",
		`REVERB_HOST="localhost"`,
		"REVERB_PORT=8080",
		"REVERB_SCHEME=http",
		`VITE_REVERB_APP_KEY="${REVERB_APP_KEY}"`,
		`VITE_REVERB_HOST="${REVERB_HOST}"`,
		`VITE_REVERB_PORT="${REVERB_PORT}"`,
		`VITE_REVERB_SCHEME="${REVERB_SCHEME}"`,
	}
	got := r.EnvLines()
	if len(got) != len(want) {
		t.Fatalf("EnvLines() = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestInstallNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "reverb.toml")
	const old = "# mine\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Install(path, rand.NewChaCha8([32]byte{}))
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Install over a file: %v, want fs.ErrExist", err)
	}
	if data, _ := os.ReadFile(path); string(data) != old {
		t.Errorf("file changed to %q", data)
	}
	// A dangling symlink counts as existing too.
	link := filepath.Join(dir, "link.toml")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), link); err != nil {
		t.Skip(err)
	}
	if _, err := Install(link, rand.NewChaCha8([32]byte{})); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Install over a symlink: %v, want fs.ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("Install wrote through a symlink")
	}
}

func TestInstallShortRandom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reverb.toml")
	if _, err := Install(path, bytes.NewReader([]byte{1, 2, 3, 4})); err == nil {
		t.Fatal("Install with a short random stream succeeded")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file left behind after failure: %v", err)
	}
}

func equalApp(a, b App) bool { return reflect.DeepEqual(a, b) }

func equalConfig(a, b *Config) bool { return reflect.DeepEqual(a, b) }
