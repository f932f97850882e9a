//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sealgate/internal/sealgatetest"
)

// ---- relay subprocess ----

// relayProc is the relay subprocess (internal/sealgatetest) and the file its log goes to.
type relayProc struct {
	*sealgatetest.Relay
	logPath string
	logFile *os.File
}

// relayProfile is the -relay-cpuprofile flag.
var relayProfile string

// startRelay runs `SEALGATE serve --dev` in base/dev (base/dev-NAME) with every listener on
// a free port and the sink as next hop, and waits until it logs its listening addresses.
// Its log (stdout and stderr) goes to base/relay.log (relay-NAME.log). extraEnv is added
// to its environment; profile, when set, is where it writes a CPU profile.
func startRelay(bin, base, name, nextHop string, conns int, profile string, extraEnv ...string) (*relayProc, error) {
	dir, logName := "dev", "relay.log"
	if name != "" {
		dir, logName = "dev-"+name, "relay-"+name+".log"
	}
	logPath := filepath.Join(base, logName)
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"--next-hop", nextHop}
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	// Every load client connects from 127.0.0.1: raise the per-address connection limit
	// (20 by default, a defence against one client taking every slot) above the load.
	env := append([]string{fmt.Sprintf("SEALGATE_LIMITS_MAX_CONNECTIONS_PER_IP=%d", conns+8)}, extraEnv...)
	r, err := sealgatetest.Start(sealgatetest.Options{Binary: bin, Dir: filepath.Join(base, dir), Args: args, Log: logFile, Env: env})
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%w\nits log ends:\n%s", err, tail(logPath, 20))
	}
	return &relayProc{Relay: r, logPath: logPath, logFile: logFile}, nil
}

// stop sends SIGTERM, waits for the relay to exit (it lets sessions and deliveries in
// flight end, up to 30 s) and describes how it ended; after 45 s it is killed.
func (rl *relayProc) stop() string {
	defer rl.logFile.Close() // every line is written once the relay has exited
	if rl.Exited() {
		return fmt.Sprintf("had already exited: %v", rl.WaitErr())
	}
	t := time.Now()
	status := "exit status 0"
	if err := rl.Stop(45 * time.Second); err != nil {
		status = err.Error()
	}
	return fmt.Sprintf("%s, %.0f ms after SIGTERM", status, ms(time.Since(t)))
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// ---- /proc ----

// clockTicks is the unit of the CPU times in /proc (USER_HZ), from `getconf CLK_TCK`. It
// is 100 on every Linux architecture Go supports, which is the fallback.
func clockTicks() int {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

// procCPU returns utime+stime of a process in clock ticks ("self" for this one).
func procCPU(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ... : comm may hold spaces and parentheses, so cut at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	return utime + stime, nil
}

// systemCPU returns the whole machine's busy and idle (idle+iowait) time in clock ticks,
// summed over all CPUs, from /proc/stat.
func systemCPU() (busy, idle int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: unexpected format")
	}
	// user nice system idle iowait irq softirq steal (guest time is already in user).
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, errors.New("/proc/stat: unexpected format")
		}
		if i == 3 || i == 4 {
			idle += n
		} else {
			busy += n
		}
	}
	return busy, idle, nil
}

type cpuSnap struct {
	relay, self, busy, idle int64
}

// snapshot reads the CPU time of the relay processes (summed: one node, or every node
// and what runs beside them in the scale-out pass), of this process and of the machine.
func snapshot(relayPIDs ...int) (cpuSnap, error) {
	var s cpuSnap
	for _, pid := range relayPIDs {
		n, err := procCPU(strconv.Itoa(pid))
		if err != nil {
			return s, fmt.Errorf("relay CPU: %w", err)
		}
		s.relay += n
	}
	var err error
	if s.self, err = procCPU("self"); err != nil {
		return s, err
	}
	s.busy, s.idle, err = systemCPU()
	return s, err
}

// fsType names the file system holding dir, for the report (fsync cost depends on it).
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	switch uint32(st.Type) {
	case 0x01021994:
		return "tmpfs"
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794C7630:
		return "overlayfs"
	case 0x2FC12FC1:
		return "zfs"
	}
	return fmt.Sprintf("file system type %#x", uint32(st.Type))
}
