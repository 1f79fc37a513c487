package main

import (
	"io"
	"slices"
	"testing"
)

// TestParseArgsDashes: "--" ends the flags, unless it is a flag's value.
func TestParseArgsDashes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args     []string
		text     string
		verbose  bool
		wantRest []string
	}{
		{[]string{"a", "--", "--text", "x"}, "", false, []string{"a", "--text", "x"}},
		{[]string{"--text", "--", "a", "-v"}, "--", true, []string{"a"}},
		{[]string{"--text=--", "--", "-v"}, "--", false, []string{"-v"}},
		{[]string{"-v", "--", "-v"}, "", true, []string{"-v"}},
		{[]string{"--text", "--text", "--", "-v"}, "--text", false, []string{"-v"}},
		{[]string{"--text", "--", "--", "-v"}, "--", false, []string{"-v"}},
	} {
		fs := newFlagSet("test", "[ARG...]")
		text := fs.String("text", "", "")
		verbose := fs.Bool("v", false, "")
		e := &env{stdout: io.Discard, stderr: io.Discard}
		rest, code, ok := parseArgs(e, fs, tc.args)
		if !ok || code != 0 || *text != tc.text || *verbose != tc.verbose || !slices.Equal(rest, tc.wantRest) {
			t.Errorf("%q: rest %q, text %q, -v %v, ok %v; want rest %q, text %q, -v %v",
				tc.args, rest, *text, *verbose, ok, tc.wantRest, tc.text, tc.verbose)
		}
	}
}
