package jsonstr

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Append must produce what encoding/json produces without HTML
// escaping, byte for byte.
func TestAppendMatchesEncodingJSON(t *testing.T) {
	inputs := []string{
		"", "plain", `quote " and backslash \`, "\x00\x01\x1f\x7f", "\b\f\n\r\t",
		"<script>&amp;</script>", "é中文🙂", "\u2028\u2029", "bad \xff\xfe utf8", "\xe2\x82",
		strings.Repeat("x", 300) + "\n",
	}
	for _, s := range inputs {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSuffix(buf.String(), "\n")
		if got := string(Append(nil, s)); got != want {
			t.Errorf("Append(%q) = %s, want %s", s, got, want)
		}
	}
}
