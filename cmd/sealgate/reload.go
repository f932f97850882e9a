package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"sealgate/relay"
)

func newReloadCmd() *cobra.Command {
	var configFile, dir string
	cmd := &cobra.Command{
		Use:   "reload [--config FILE | --dir DIR]",
		Short: "Make the running relay re-read its configuration, users file, keys and certificates",
		Long: `Ask the running "sealgate serve" to reload, through its control socket DIR/control.sock
(mode 0600: run it as the user sealgate runs as); the same as SIGHUP (systemctl reload
sealgate, kill -HUP PID), but it waits for the answer. Connections stay open and queued mail
is untouched.

A configuration with problems is not applied: the relay runs on, and each problem is printed
(exit 1). Changes that need a restart (listeners, limits, relay, hostname, dir, admin.listen,
log.format) are listed; the rest takes effect for new sessions, logins and messages.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			d, err := stateDir(dir, configFile)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context(), time.Minute)
			defer cancel()
			var res reloadResult
			err = relay.ControlCall(ctx, controlSocket(d), "reload", nil, &res)
			var ce *relay.ControlError
			switch {
			case errors.As(err, &ce):
				fmt.Fprintln(c.OutOrStdout(), ce.Msg)
				return exitStatus(1, errors.New("reload: the relay kept its running configuration"))
			case err != nil:
				return fmt.Errorf("reload: %w", err)
			}
			fmt.Fprintln(c.OutOrStdout(), "reloaded")
			for _, k := range res.Restart {
				fmt.Fprintf(c.OutOrStdout(), "needs a restart to take effect: %s\n", k)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "/etc/sealgate/sealgate.yaml", "configuration file of the running relay (for its dir)")
	f.StringVar(&dir, "dir", "", "the relay's state directory (instead of reading --config)")
	return cmd
}

// stateDir is the running relay's state directory for the commands that talk to it through
// its control socket: dir (--dir) if set, else the configuration's. A file with problems
// still names its dir: the relay reports the problems, where it is asked to.
func stateDir(dir, configFile string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	cfg, err := loadConfig(configFile)
	if cfg == nil || cfg.Dir == "" {
		return "", fmt.Errorf("configuration %s (give --dir to name the state directory instead):\n%w", configFile, err)
	}
	return cfg.Dir, nil
}

func init() {
	rootCmd.AddCommand(newReloadCmd())
}
