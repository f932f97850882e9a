package atomicfile_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"sealgate/internal/atomicfile"
)

func Example() {
	dir, _ := os.MkdirTemp("", "atomicfile-example")
	defer os.RemoveAll(dir)

	// A key is never replaced by accident.
	key := filepath.Join(dir, "s1.pem")
	fmt.Println(atomicfile.Create(key, []byte("key one\n"), 0o600))
	err := atomicfile.Create(key, []byte("key two\n"), 0o600)
	fmt.Println(errors.Is(err, fs.ErrExist))

	// Content streamed from a reader replaces the file in one step.
	msg := filepath.Join(dir, "outbox.eml")
	err = atomicfile.WriteFunc(msg, atomicfile.Options{Perm: 0o600}, func(w io.Writer) error {
		_, err := io.Copy(w, strings.NewReader("Subject: hi\r\n\r\nbody\r\n"))
		return err
	})
	fmt.Println(err)
	// Output:
	// <nil>
	// true
	// <nil>
}
