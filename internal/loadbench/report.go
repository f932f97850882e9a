//go:build linux

package main

import (
	"fmt"
	"os"
	"text/tabwriter"
)

// ---- output ----

func sizeLabel(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func printReport(rep *report) {
	sc := rep.Signing
	fmt.Printf("\nsealgate load benchmark: %d cores, durable spool on %s, CLK_TCK %d\n", rep.Cores, rep.SpoolFS, rep.ClockTicks)
	fmt.Printf("signing CPU per message, in-process (3×RSA-2048 + 1×Ed25519, %d iterations, before and after the runs): median %.3f ms before, %.3f ms after; using %.3f (mean %.3f; RSA-2048 %.3f ms, Ed25519 %.3f ms each)\n",
		sc.Iterations, sc.BeforeMS, sc.AfterMS, sc.MedianMS, sc.MeanMS, sc.RSAMS, sc.Ed25519MS)
	fmt.Printf("ceiling set by the signatures alone: %d cores / %.3f ms = %.0f msg/s\n", rep.Cores, sc.MedianMS, rep.CeilingMsgPS)

	fmt.Println("\nend to end (sink open):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tSIZE\tCONNS\tACCEPTED\tERRORS\tMSG/S\tP50 ms\tP99 ms\tRELAY CPU s/1000\tSINK RCVD\t% CEILING\tRELAY/SIGN\tSIGN SHARE\t")
	for _, r := range rep.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.3f\t%d (%d)\t%.1f%%\t%.2f×\t%.1f%%\t\n",
			r.Mode, sizeLabel(r.Size), r.Conns, r.Accepted, r.Errors, r.MsgPerS, r.P50MS, r.P99MS,
			r.RelayCPUPer1k, r.SinkTotal, r.SinkInWindow, r.PctCeiling, r.RelayOverSign, r.SignSharePct)
	}
	tw.Flush()

	fmt.Printf("\nacceptance alone (sink held) beside end to end; target: delivery adds at most %d%% CPU per message:\n", deliveryTargetPct)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tSIZE\tACCEPTED\tERRORS\tMSG/S\tP50 ms\tP99 ms\tACCEPT CPU s/1000\tE2E MSG/S\tE2E CPU s/1000\tDELIVERY +CPU\tTARGET\tDRAIN MSG/S\tDRAIN CPU s/1000\t")
	for _, r := range rep.Runs {
		a := r.AcceptOnly
		if a == nil {
			continue
		}
		target := "-"
		if r.Accepted > 0 && a.RelayCPUPer1k > 0 {
			target = "MISSED"
			if r.DeliveryWithinTarget {
				target = "met"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.3f\t%.1f\t%.3f\t%+.1f%%\t%s\t%.1f\t%.3f\t\n",
			r.Mode, sizeLabel(r.Size), a.Accepted, a.Errors, a.MsgPerS, a.P50MS, a.P99MS, a.RelayCPUPer1k,
			r.MsgPerS, r.RelayCPUPer1k, r.DeliveryCPUPct, target, a.DrainMsgPerS, a.DrainCPUPer1k)
	}
	tw.Flush()

	fmt.Println("\nend-to-end latency and backlog (sink open):")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tSIZE\tE2E P50 ms\tE2E P99 ms\tOF MSGS\tBACKLOG END\tBACKLOG MAX\tTREND msg/s\tDELIVERY\t")
	for _, r := range rep.Runs {
		if r.AcceptOnly == nil || r.WindowS == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%d\t%d\t%d\t%+.1f\t%s\t\n",
			r.Mode, sizeLabel(r.Size), r.E2EP50MS, r.E2EP99MS, r.E2EMessages, r.BacklogEnd, r.BacklogMax, r.BacklogTrend, r.BacklogVerdict)
	}
	tw.Flush()

	fmt.Printf("\nCPU during each end-to-end window, in cores busy (of %d):\n", rep.Cores)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tSIZE\tWINDOW s\tRELAY\tLOADGEN+SINK\tOTHER\tIDLE\tDRAIN s\t")
	for _, r := range rep.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
			r.Mode, sizeLabel(r.Size), r.WindowS, r.RelayCores, r.LoadgenCores, r.OtherCores, r.IdleCores, r.DrainS)
	}
	tw.Flush()

	fmt.Printf(`
MSG/S       messages answered 250, per second of the window (connections are opened and
            authenticated before it starts).
P50/P99     accept latency: end of DATA (the final dot) to the 250 (the spool fsyncs first).
RELAY CPU   the relay process's utime+stime per 1000 accepted messages, from the start of the
            window until the sink had every accepted message (so delivery is included).
SINK RCVD   messages the next-hop sink received after the drain (in the window alone).
%% CEILING   MSG/S ÷ the signing ceiling. The load generator and sink (this process) and any
            other work on the machine share the cores with the relay (see the CPU table), so
            on a small machine this understates what the relay alone can do.
RELAY/SIGN  relay CPU ms per message ÷ signing ms per message: 1.00× would mean the relay
            spends nothing but the four signatures. Largely independent of who else uses
            the cores, so the fairer figure on a shared machine.
SIGN SHARE  its inverse: the share of the relay's CPU the signatures need, i.e. about the %%
            of the ceiling the relay would reach with every core to itself.
ACCEPT CPU  the accept-only pass (sink held: the relay accepts and spools, delivers nothing):
            relay CPU per 1000 accepted, from the start of the window until the clients quit.
E2E CPU     RELAY CPU above, of the end-to-end pass.
DELIVERY    +CPU: (E2E CPU - ACCEPT CPU) / ACCEPT CPU, what delivery adds per message.
DRAIN       the accept-only pass's backlog delivered once the sink was released: messages per
            second and relay CPU per 1000 from the release until the sink had them all.
E2E P50/P99 end-to-end latency: the client writing the final dot to the sink reading it
            (its end of DATA), over OF MSGS accepted messages, drain included.
BACKLOG     accepted minus received by the sink, sampled each second; END at the end of the
            window, TREND its least-squares slope from the first second on. "keeps up" when
            it grows by at most %d%% of MSG/S.
relay stopped with SIGTERM: %s
`, backlogTrendPct, rep.RelayExit)
}
