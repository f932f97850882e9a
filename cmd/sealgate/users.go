package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"sealgate/internal/addr"
	"sealgate/internal/atomicfile"
	"sealgate/internal/config"
	"sealgate/keys"
	"sealgate/submit"
)

func newUsersCmd() *cobra.Command {
	users := &cobra.Command{
		Use:   "users",
		Short: "Manage the users file of SMTP AUTH logins",
		Long: `The users file holds one line per login:

  LOGIN HASH MAY_SEND_AS... [null_sender=yes] [seal=no] [unsigned=yes] [rate=N] [max_recipients=N]

HASH is an argon2id PHC string (or an imported bcrypt hash). Passwords themselves are never
stored or logged. MAY_SEND_AS patterns: bob@corp.example, *@corp.example (that domain only),
*@*.corp.example (its subdomains only).`,
	}
	users.AddCommand(newUsersAddCmd())
	return users
}

func newUsersAddCmd() *cobra.Command {
	var file string
	var patterns []string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "add LOGIN [--file FILE] [--may-send-as PATTERN...] [--password-stdin]",
		Short: "Hash a password and add a login to a users file",
		Long: `Ask for a password (twice, without echo) or read it from the first line of standard
input with --password-stdin, hash it with argon2id and append the user's line to FILE
(created with mode 0600 if missing). Without --file the line is printed on standard output.

--may-send-as may be repeated. Without it, a LOGIN that is an address may send as exactly
that address. Options such as rate=60 can be added to the line afterwards.`,
		Example: `  sealgate users add alice@corp.example --file /etc/sealgate/users --may-send-as '*@corp.example'
  printf '%s\n' "$PASSWORD" | sealgate users add build-bot --password-stdin \
      --may-send-as ci@corp.example --may-send-as '*@*.ci.corp.example' >> users`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUsersAdd(cmd, args[0], file, patterns, passwordStdin)
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "users file to append to (default: print the line)")
	f.StringArrayVar(&patterns, "may-send-as", nil, "address pattern the user may send as (repeatable)")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	return cmd
}

func runUsersAdd(cmd *cobra.Command, login, file string, patterns []string, passwordStdin bool) error {
	if err := config.ValidateLogin(login); err != nil {
		return exitStatus(2, fmt.Errorf("users add: %w", err))
	}
	if len(patterns) == 0 {
		a, err := addr.ParseAddress(login)
		if err != nil {
			return exitStatus(2, errors.New("users add: LOGIN is not an address; give --may-send-as"))
		}
		patterns = []string{a.String()}
	}
	if err := config.CheckUsersFilePatterns(patterns); err != nil {
		return exitStatus(2, fmt.Errorf("users add: %w", err))
	}
	if file != "" {
		if err := checkLoginFree(file, login); err != nil {
			return exitStatus(1, fmt.Errorf("users add: %w", err))
		}
	}
	pw, err := readNewPassword(cmd, passwordStdin)
	if err != nil {
		return exitStatus(1, fmt.Errorf("users add: %w", err))
	}
	if len(pw) < 12 {
		fmt.Fprintln(cmd.ErrOrStderr(), "sealgate: warning: password shorter than 12 characters")
	}
	hash, err := submit.HashPassword(pw)
	if err != nil {
		return fmt.Errorf("users add: %w", err)
	}
	line, err := config.FormatUserLine(login, hash, patterns)
	if err != nil {
		return exitStatus(2, fmt.Errorf("users add: %w", err))
	}
	if file == "" {
		fmt.Fprintln(cmd.OutOrStdout(), line)
		return nil
	}
	if err := appendLine(file, line); err != nil {
		return exitStatus(1, fmt.Errorf("users add: %w", err))
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "added %s to %s (may send as %s)\n", login, file, strings.Join(patterns, ", "))
	// serve and config check refuse a users file others can read (the hashes are secrets).
	if st, err := os.Stat(file); err == nil {
		if err := keys.CheckFileMode(file, st, "the password hashes"); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "sealgate: warning: %v; serve refuses it until then\n", err)
		}
	}
	return nil
}

// checkLoginFree fails if file already has a line for login (compared like
// logins are at AUTH: ASCII case-insensitively); a duplicate would make the
// whole file invalid.
func checkLoginFree(file, login string) error {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && !strings.HasPrefix(fields[0], "#") && config.FoldLogin(fields[0]) == config.FoldLogin(login) {
			return fmt.Errorf("%s:%d: login %q is already there; edit or remove that line first", file, n, fields[0])
		}
	}
	return sc.Err()
}

// appendLine appends one line in a single write, so concurrent appends do not
// interleave, creating the file with mode 0600.
func appendLine(file, line string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil && st.Size() > 0 {
		// Do not glue the new line to a last line without a newline.
		var last [1]byte
		if r, err := os.Open(file); err == nil {
			if _, err := r.ReadAt(last[:], st.Size()-1); err == nil && last[0] != '\n' {
				line = "\n" + line
			}
			r.Close()
		}
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// An append, not a replacement (concurrent appends must not lose each other),
	// so no atomic rename; but a newly created file's name is durable only once
	// its directory is synced.
	return atomicfile.SyncDir(filepath.Dir(file))
}

// readNewPassword reads the password from standard input (--password-stdin) or
// asks for it twice on the terminal without echo. It never prints it.
func readNewPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	in := cmd.InOrStdin()
	if fromStdin {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", errors.New("no password on standard input")
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errors.New("empty password on standard input")
		}
		return pw, nil
	}
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("standard input is not a terminal; use --password-stdin")
	}
	ask := func(prompt string) (string, error) {
		fmt.Fprint(cmd.ErrOrStderr(), prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		return string(b), err
	}
	pw, err := ask("Password: ")
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", errors.New("empty password")
	}
	again, err := ask("Repeat password: ")
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the passwords differ")
	}
	return pw, nil
}

func init() {
	rootCmd.AddCommand(newUsersCmd())
}
