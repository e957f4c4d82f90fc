// Command ocs-bench drives a running charging engine over HTTP, measures it
// against a ceiling server on the same machine, audits the ledger after
// every run and writes a report.
//
//	ocs-bench run       --target URL --ops-key K --scenario sms --rate 60000 --duration 30s
//	ocs-bench compare   (the same flags; prints the engine's fraction of the ceiling)
//	ocs-bench provision --target URL --ops-key K --subscribers 1000000
//	ocs-bench limit     --listen 127.0.0.1:8090 --data DIR
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ocs-engine/ocs/bench"
	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/internal/procs"
)

const usage = `ocs-bench: load generator, ceiling server and auditor for the charging engine.

Subcommands:
  run        provision, run a scenario against --target, audit, then run the same
             scenario against a limit server this command starts (unless
             --ceiling=false) and write a report with the engine's fraction of it
             (the voucher scenario has no ceiling: the limit server has no
             vouchers, and the report says so)
  compare    the same as run, and prints only the fraction at the end
  provision  create --subscribers subscribers (38349000000 + i) on --target
  limit      serve the ceiling: same requests, in-memory update, group-committed
             synced Pebble writes

Run "ocs-bench SUBCOMMAND -h" for its flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	// The ceiling server (limit, and compare's own) blocks in fdatasync as
	// the engine does: both run with the same Ps (internal/procs), so that
	// the fraction compares the engines, not their schedulers.
	procs.Set(os.Getenv)
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:], false)
	case "compare":
		err = runCmd(os.Args[2:], true)
	case "provision":
		err = provisionCmd(os.Args[2:])
	case "limit":
		err = limitCmd(os.Args[2:])
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "ocs-bench: unknown subcommand %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocs-bench:", err)
		os.Exit(1)
	}
}

// amountFlag is a charging.Amount given as decimal euros.
type amountFlag struct{ a *charging.Amount }

func (f amountFlag) String() string {
	if f.a == nil {
		return ""
	}
	return f.a.String()
}

func (f amountFlag) Set(s string) error {
	a, err := charging.ParseAmount(s)
	if err != nil {
		return err
	}
	*f.a = a
	return nil
}

// mixFlag is a Mix given as sms=70,session=20,topup=10.
type mixFlag struct{ m *bench.Mix }

func (f mixFlag) String() string {
	if f.m == nil {
		return ""
	}
	return f.m.String()
}

func (f mixFlag) Set(s string) error {
	m, err := bench.ParseMix(s)
	if err != nil {
		return err
	}
	*f.m = m
	return nil
}

// commonFlags registers the flags every load-sending subcommand shares.
func commonFlags(fs *flag.FlagSet, c *bench.Config) {
	c.Balance = charging.Euros(100)
	c.TopUp = charging.Euros(5)
	fs.StringVar(&c.Target, "target", "http://127.0.0.1:8080", "base URL of the engine")
	fs.StringVar(&c.OpsKey, "ops-key", os.Getenv("OCS_BOOTSTRAP_KEY"), "ops API key (default: $OCS_BOOTSTRAP_KEY)")
	fs.IntVar(&c.Subscribers, "subscribers", 100_000, "subscribers used: 38349000000 … +N-1")
	fs.IntVar(&c.Concurrency, "concurrency", 256, "closed loop: callers; open loop: most requests in flight (= connections)")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "timeout of one request")
	fs.Var(amountFlag{&c.Balance}, "balance", "opening balance of provisioned subscribers, euros")
}

func runCmd(args []string, compare bool) error {
	name := "run"
	if compare {
		name = "compare"
	}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	var c bench.Config
	commonFlags(fs, &c)
	c.Mix = bench.DefaultMix
	fs.StringVar(&c.Scenario, "scenario", bench.ScenarioSMS, "one of "+strings.Join(bench.Scenarios, ", "))
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: requests per second scheduled (latency from the scheduled time); 0: closed loop")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "length of the run (not of a ramp: see -ramp-step-for)")
	fs.Var(mixFlag{&c.Mix}, "mix", "weights of the mixed scenario")
	fs.Var(amountFlag{&c.TopUp}, "topup", "amount of each electronic top-up, euros")
	fs.IntVar(&c.SessionUpdates, "session-updates", 3, "updates between a session's create and release")
	c.VoucherValue = charging.Euros(5)
	fs.Var(amountFlag{&c.VoucherValue}, "voucher-value", "face value of the cards redeemed: 5, 10 or 20 euros")
	fs.IntVar(&c.VoucherCards, "voucher-cards", 0, "cards generated on the server before the run (0: sized from rate, duration and mix; closed loop assumes 40,000/s)")
	voucherBatch := fs.Uint("voucher-batch", 0, "first batch number of the run's cards, new on the server (0: the Unix time, skipping taken numbers)")
	fs.StringVar(&c.RampScenario, "ramp-scenario", bench.ScenarioSMS, "scenario the ramp raises the rate of")
	fs.Float64Var(&c.RampStart, "ramp-start", 10_000, "first ramp rate, requests/s")
	fs.Float64Var(&c.RampStep, "ramp-step", 10_000, "ramp increment, requests/s")
	fs.Float64Var(&c.RampMax, "ramp-max", 300_000, "last ramp rate tried")
	fs.DurationVar(&c.RampStepFor, "ramp-step-for", 10*time.Second, "length of one ramp step")
	fs.DurationVar(&c.RampP99, "ramp-p99", 10*time.Millisecond, "p99 a ramp step must hold")
	fs.IntVar(&c.AuditSubscribers, "audit-subscribers", 20_000, "balances checked one by one after the run")
	fs.IntVar(&c.AuditTopUps, "audit-topups", 20_000, "acknowledged top-ups looked up in histories")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of subscriber and operation choices")
	provision := fs.Bool("provision", true, "provision the subscribers first (existing ones are left as they are)")
	ceiling := fs.Bool("ceiling", true, "also run the scenario against a limit server started here, and report the fraction")
	gap := fs.Duration("ceiling-gap", 10*time.Second, "pause between the engine run and the ceiling run")
	limitData := fs.String("limit-data", "", "Pebble directory of the limit server (default: a temporary one)")
	results := fs.String("results", "", "results folder (default ./results/<timestamp>)")
	_ = fs.Parse(args)
	if compare {
		*ceiling = true
	}
	if *voucherBatch > 1<<32-1 {
		return errors.New("--voucher-batch must be 1 … 4294967295")
	}
	c.VoucherBatch = uint32(*voucherBatch)
	if *results == "" {
		*results = bench.DefaultResultsDir(time.Now())
	}
	rep := &bench.Report{Command: "ocs-bench " + strings.Join(os.Args[1:], " "), Machine: bench.MachineFacts(".")}
	if *provision {
		p, err := bench.Provision(c, os.Stderr)
		if err != nil {
			return err
		}
		rep.Provision = &p
		fmt.Fprintf(os.Stderr, "provisioned %d (%d existed) in %s: %.0f/s\n", p.Created, p.Existed, p.Elapsed.Round(time.Millisecond), p.Rate())
	}
	engine, err := bench.Run(c, os.Stderr)
	if engine != nil {
		rep.Engine = engine
		printResult("engine", engine)
	}
	if err != nil {
		return err
	}
	if *ceiling {
		fmt.Fprintf(os.Stderr, "pausing %s before the ceiling run\n", *gap)
		time.Sleep(*gap)
		res, err := runCeiling(c, *limitData)
		switch {
		case errors.Is(err, bench.ErrNotAvailable):
			// The limit server has no vouchers: a ceiling of a
			// redemption would need the engine's voucher store, which is
			// what is measured. Say so instead of inventing a figure.
			note := fmt.Sprintf("no ceiling for scenario %s: the limit server does not serve its operations (%v)", c.Scenario, err)
			fmt.Fprintln(os.Stderr, note)
			rep.Notes = append(rep.Notes, note)
		case err != nil:
			return fmt.Errorf("ceiling: %w", err)
		default:
			rep.Ceiling = res
			printResult("ceiling", res)
		}
	}
	path, err := bench.WriteReport(*results, rep)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "report:", path)
	if rep.Ceiling != nil {
		fmt.Printf("engine %.0f/s = %.1f%% of the ceiling %.0f/s\n", rep.Engine.Runs[0].Throughput(), 100*rep.Fraction(), rep.Ceiling.Runs[0].Throughput())
	}
	if !engine.Audit.OK || (rep.Ceiling != nil && !rep.Ceiling.Audit.OK) {
		return errors.New("the audit failed: see the report")
	}
	return nil
}

func printResult(name string, r *bench.Result) {
	for _, s := range r.Runs {
		fmt.Fprintf(os.Stderr, "%s %s: %.0f/s answered (ok %d, refused %d, failed %d, missed %d) p50 %s p90 %s p99 %s p99.9 %s max %s\n",
			name, s.Name, s.Throughput(), s.OK, s.Refused, s.Failed, s.Missed, s.P50, s.P90, s.P99, s.P999, s.Max)
		if s.FirstFailure != "" {
			fmt.Fprintf(os.Stderr, "  first failure: %s\n", s.FirstFailure)
		}
	}
	if r.Config.Scenario == bench.ScenarioRamp {
		fmt.Fprintf(os.Stderr, "%s ramp: highest rate held %.0f/s\n", name, r.RampHeld)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(os.Stderr, "%s skipped %s\n", name, s)
	}
	verdict := "passed"
	if !r.Audit.OK {
		verdict = "FAILED: " + strings.Join(r.Audit.Problems, "; ")
	}
	fmt.Fprintf(os.Stderr, "%s audit %s (%d balances, %d top-ups checked, %d of them card credits of %s in all)\n", name, verdict,
		r.Audit.SubscribersChecked, r.Audit.TopUpsChecked, r.Audit.VouchersChecked, r.Audit.VoucherCredited)
}

// runCeiling starts this binary's limit subcommand as a child process (so
// that it has its own runtime and GC, like the engine), provisions it and
// runs the same configuration against it.
func runCeiling(c bench.Config, dir string) (*bench.Result, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "ocs-bench-limit-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := hex.EncodeToString(k[:])
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "limit", "--listen", addr, "--data", dir)
	cmd.Env = append(os.Environ(), "OCS_BOOTSTRAP_KEY="+key)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	c.Target, c.OpsKey, c.NetworkKey, c.ChannelKey = "http://"+addr, key, "", ""
	if err := waitReady(c); err != nil {
		return nil, err
	}
	if _, err := bench.Provision(c, os.Stderr); err != nil {
		return nil, err
	}
	return bench.Run(c, os.Stderr)
}

func waitReady(c bench.Config) error {
	client, err := bench.NewClient(c.Target, c.OpsKey, 1, time.Second)
	if err != nil {
		return err
	}
	defer client.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := client.Ledger()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("limit server not ready after 30 s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func provisionCmd(args []string) error {
	fs := flag.NewFlagSet("provision", flag.ExitOnError)
	var c bench.Config
	commonFlags(fs, &c)
	_ = fs.Parse(args)
	p, err := bench.Provision(c, os.Stderr)
	fmt.Printf("provisioned %d (%d existed) in %s: %.0f/s\n", p.Created, p.Existed, p.Elapsed.Round(time.Millisecond), p.Rate())
	return err
}

func limitCmd(args []string) error {
	fs := flag.NewFlagSet("limit", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve on")
	data := fs.String("data", "", "Pebble directory (required)")
	key := fs.String("ops-key", os.Getenv("OCS_BOOTSTRAP_KEY"), "ops key (default: $OCS_BOOTSTRAP_KEY)")
	_ = fs.Parse(args)
	if *data == "" || *key == "" {
		return errors.New("limit needs --data DIR and an ops key (--ops-key or $OCS_BOOTSTRAP_KEY)")
	}
	l, err := bench.StartLimit(bench.LimitConfig{Listen: *listen, Dir: *data, BootstrapKey: *key})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "limit server on %s\n", l.URL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return l.Close()
}
