package main

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"sealgate/internal/config"
)

func newConfigShowCmd() *cobra.Command {
	var file string
	var nonDefault, defaults bool
	cmd := &cobra.Command{
		Use:   "show [--config FILE] [-n | -d]",
		Short: "Print the effective configuration, defaults filled in, secrets redacted",
		Long: `Print the configuration serve would run on: the file with its SEALGATE_* environment
overrides and every default filled in, one "key = value" line per setting (list entries as
key[N].field), like postconf. Secrets written in the file (relay.auth.password and any other
key named password or secret) are shown as <redacted>; files are shown by name, never read out.

  -n  only the settings that differ from the defaults (postconf -n)
  -d  only the defaults (postconf -d); no file is read

A file with problems is still shown; the problems follow on stderr and the exit status is 1
("sealgate config check" lists them too).`,
		Example: `  sealgate config show --config /etc/sealgate/sealgate.yaml -n
  sealgate config show -d | grep limits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if defaults {
				keys := make([]string, 0, len(config.Defaults))
				for k := range config.Defaults {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				for _, k := range keys {
					fmt.Fprintf(out, "%s = %s\n", k, showValue(k, reflect.ValueOf(config.Defaults[k])))
				}
				return nil
			}
			cfg, err := loadConfig(file)
			if cfg == nil {
				return err
			}
			showConfig(out, cfg, nonDefault)
			if err != nil {
				problems := flatten(err)
				for _, p := range problems {
					fmt.Fprintln(cmd.ErrOrStderr(), p)
				}
				return exitStatus(1, fmt.Errorf("config show: %s: %d problem(s)", file, len(problems)))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "config", "/etc/sealgate/sealgate.yaml", "configuration file")
	f.BoolVarP(&nonDefault, "non-default", "n", false, "only settings that differ from the defaults")
	f.BoolVarP(&defaults, "defaults", "d", false, "only the defaults")
	cmd.MarkFlagsMutuallyExclusive("non-default", "defaults")
	return cmd
}

// showConfig writes cfg as "key = value" lines in the order of its struct.
func showConfig(w io.Writer, cfg *config.Config, nonDefault bool) {
	var lines [][2]string
	walkConfig("", reflect.ValueOf(cfg).Elem(), &lines)
	for _, l := range lines {
		if nonDefault {
			if d, ok := config.Defaults[l[0]]; ok && showValue(l[0], reflect.ValueOf(d)) == l[1] {
				continue
			}
			if _, ok := config.Defaults[l[0]]; !ok && (l[1] == "" || l[1] == "[]" || l[1] == "0" || l[1] == "false" || l[1] == "(default)") {
				continue
			}
		}
		fmt.Fprintf(w, "%s = %s\n", l[0], l[1])
	}
}

// walkConfig flattens v by its mapstructure tags.
func walkConfig(prefix string, v reflect.Value, out *[][2]string) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		fv := v.Field(i)
		if opts == "squash" {
			walkConfig(prefix, fv, out)
			continue
		}
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		switch {
		case fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeFor[time.Duration]():
			walkConfig(key, fv, out)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			for j := range fv.Len() {
				walkConfig(fmt.Sprintf("%s[%d]", key, j), fv.Index(j), out)
			}
		default:
			*out = append(*out, [2]string{key, showValue(key, fv)})
		}
	}
}

// showValue formats one setting; secrets are redacted.
func showValue(key string, v reflect.Value) string {
	leaf := key[strings.LastIndexAny(key, ".]")+1:]
	if leaf == "password" || leaf == "secret" || strings.HasSuffix(leaf, "_password") || strings.HasSuffix(leaf, "_secret") {
		if v.Kind() == reflect.String && v.String() != "" {
			return "<redacted>"
		}
	}
	switch {
	case !v.IsValid():
		return ""
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			return "(default)"
		}
		return showValue(key, v.Elem())
	case v.Type() == reflect.TypeFor[time.Duration]():
		return v.Interface().(time.Duration).String()
	case v.Kind() == reflect.String:
		// Defaults of durations are written as strings ("5m"); show them as durations.
		if d, err := time.ParseDuration(v.String()); err == nil && v.String() != "0" {
			return d.String()
		}
		return v.String()
	case v.Kind() == reflect.Slice:
		var parts []string
		for i := range v.Len() {
			parts = append(parts, showValue(key, v.Index(i)))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}
