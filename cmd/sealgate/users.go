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
	"sealgate/internal/secretfile"
	"sealgate/submit"
)

func newUsersCmd() *cobra.Command {
	users := &cobra.Command{
		Use:   "users",
		Short: "Manage the users file of SMTP AUTH logins",
		Long: `The users file holds one line per login:

  LOGIN HASH MAY_SEND_AS... [null_sender=yes] [seal=no] [unsigned=yes] [rate=N] [max_recipients=N]

A mailing list or forwarder adds role=forwarder sign_as=DOMAIN and, as needed,
list_address=ADDRESS list_name=NAME from_rewrite=off|auto|always srs=yes
trusted_authserv_ids=ID,ID (see examples/sealgate.yaml).

HASH is an argon2id PHC string (or an imported bcrypt hash). Passwords themselves are never
stored or logged. MAY_SEND_AS patterns: bob@corp.example, *@corp.example (that domain only),
*@*.corp.example (its subdomains only).`,
	}
	users.AddCommand(newUsersAddCmd(), newUsersRemoveCmd(), newUsersPasswdCmd())
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
			return exitStatus(2, fmt.Errorf("users add: %w", err))
		}
	}
	pw, err := readNewPassword(cmd, passwordStdin)
	if err != nil {
		return exitStatus(2, fmt.Errorf("users add: %w", err))
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
		return exitStatus(2, fmt.Errorf("users add: %w", err))
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "added %s to %s (may send as %s)\n%s", login, file, strings.Join(patterns, ", "), reloadHint)
	// serve and config check refuse a users file others can read (the hashes are secrets).
	if st, err := os.Stat(file); err == nil {
		if err := secretfile.CheckMode(file, st, "the password hashes"); err != nil {
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

// reloadHint follows every change of a users file.
const reloadHint = "a running relay picks the change up on reload: systemctl reload sealgate, kill -HUP PID, or sealgate reload\n"

func newUsersRemoveCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "remove LOGIN --file FILE",
		Short: "Remove a login from a users file",
		Long: `Remove LOGIN's line from FILE (logins compare ASCII case-insensitively), keeping
every other line and comment as it is. The file is replaced atomically.`,
		Example: `  sealgate users remove alice@corp.example --file /etc/sealgate/users`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := editUserLine(file, args[0], func(string) (string, bool, error) { return "", false, nil }); err != nil {
				return exitStatus(2, fmt.Errorf("users remove: %w", err))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "removed %s from %s\n%s", args[0], file, reloadHint)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "users file (required)")
	cmd.MarkFlagRequired("file")
	return cmd
}

func newUsersPasswdCmd() *cobra.Command {
	var file string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "passwd LOGIN --file FILE [--password-stdin]",
		Short: "Set a new password for a login of a users file",
		Long: `Ask for a new password (twice, without echo) or read it from the first line of
standard input with --password-stdin, and replace LOGIN's hash in FILE with its argon2id
hash; the rest of the line (may_send_as patterns, options) stays. The file is replaced
atomically.`,
		Example: `  sealgate users passwd alice@corp.example --file /etc/sealgate/users`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			login := args[0]
			// Fail on a missing login before asking for a password.
			if err := editUserLine(file, login, nil); err != nil {
				return exitStatus(2, fmt.Errorf("users passwd: %w", err))
			}
			pw, err := readNewPassword(cmd, passwordStdin)
			if err != nil {
				return exitStatus(2, fmt.Errorf("users passwd: %w", err))
			}
			if len(pw) < 12 {
				fmt.Fprintln(cmd.ErrOrStderr(), "sealgate: warning: password shorter than 12 characters")
			}
			hash, err := submit.HashPassword(pw)
			if err != nil {
				return exitStatus(2, fmt.Errorf("users passwd: %w", err))
			}
			err = editUserLine(file, login, func(line string) (string, bool, error) {
				return replaceHash(line, hash)
			})
			if err != nil {
				return exitStatus(2, fmt.Errorf("users passwd: %w", err))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "new password for %s in %s\n%s", login, file, reloadHint)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "users file (required)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	cmd.MarkFlagRequired("file")
	return cmd
}

// editUserLine finds login's line in file and replaces it with what edit returns (keep
// false: the line is removed), writing the file atomically with its mode. A nil edit only
// checks that the login is there.
func editUserLine(file, login string, edit func(line string) (string, bool, error)) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(data), "\n")
	var out strings.Builder
	found := 0
	for _, l := range lines {
		fields := strings.Fields(l)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") || config.FoldLogin(fields[0]) != config.FoldLogin(login) {
			out.WriteString(l)
			continue
		}
		found++
		if edit == nil {
			continue
		}
		nl, keep, err := edit(strings.TrimRight(l, "\r\n"))
		if err != nil {
			return err
		}
		if keep {
			out.WriteString(nl + "\n")
		}
	}
	if found == 0 {
		return fmt.Errorf("%s: no login %q", file, login)
	}
	if edit == nil {
		return nil
	}
	return atomicfile.Write(file, []byte(out.String()), st.Mode().Perm())
}

// replaceHash replaces the second field of a users file line (the hash) with hash.
func replaceHash(line, hash string) (string, bool, error) {
	login := strings.Fields(line)[0]
	rest := strings.TrimLeft(line[strings.Index(line, login)+len(login):], " \t")
	old, after, _ := strings.Cut(rest, " ")
	if old == "" {
		return "", false, errors.New("the login's line has no hash")
	}
	if after != "" {
		after = " " + after
	}
	return login + " " + hash + after, true, nil
}

func init() {
	rootCmd.AddCommand(newUsersCmd())
}
