package codeengine

import (
	"fmt"
	"io"
	"strings"
)

// WriteExports writes one `export K='V'` line per setting, values quoted
// for POSIX shells, for `eval` or `source`.
func WriteExports(w io.Writer, rc RuntimeConfig) error {
	for _, kv := range rc.Sorted() {
		if _, err := fmt.Fprintf(w, "export %s=%s\n", kv[0], ShellQuote(kv[1])); err != nil {
			return err
		}
	}
	return nil
}

// ShellQuote quotes s for a POSIX shell: in single quotes, where an
// embedded single quote closes the quotes, is escaped, and reopens them.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
