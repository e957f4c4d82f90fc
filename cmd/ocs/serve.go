package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/ocs-engine/ocs/actors"
	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/flows"
	"github.com/ocs-engine/ocs/internal/procs"
	"github.com/ocs-engine/ocs/protocols/httpapi"
	"github.com/ocs-engine/ocs/protocols/ussd"
	"github.com/ocs-engine/ocs/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// serveFlags are `ocs serve`'s flags; the defaults are the embedded demo.
type serveFlags struct {
	data   string
	listen string
	config string
	// Issue 3: vouchers, the redemption guard and transfers.
	voucherSecret string
	guard         charging.GuardPolicy
	transfer      charging.TransferRules
	redrive       flows.RedriverConfig // Interval 0: no re-driver
	cpuProfile    string               // file for a CPU profile of the whole run; "" for none
	backupDir     string               // "" : the config file's, else DATA-backups (backupDirOf)
}

func parseServeFlags(args []string) (serveFlags, error) {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&f.data, "data", "./data", "directory of the Pebble database")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address of the HTTP API, /ussd and /metrics")
	fs.StringVar(&f.config, "config", "", "JSON configuration `file` (default: the embedded demo; print it with: ocs config)")
	fs.StringVar(&f.voucherSecret, "voucher-secret", "", "voucher secret file (default: DATA/voucher.key, created on first start for the demo, never over a database that holds cards)")
	f.guard = charging.DefaultGuardPolicy()
	failures := fs.Uint("redeem-failures-max", uint(f.guard.FailuresMax), "wrong voucher codes within --redeem-window that bar a caller")
	fs.DurationVar(&f.guard.Window, "redeem-window", f.guard.Window, "window in which wrong codes are counted")
	fs.DurationVar(&f.guard.Bar, "redeem-bar", f.guard.Bar, "how long a caller stays barred from redemption")
	f.transfer = charging.DemoTransferRules()
	amounts := map[string]*charging.Amount{"transfer-min": &f.transfer.Min, "transfer-max": &f.transfer.Max, "transfer-fee": &f.transfer.Fee}
	for name, a := range amounts {
		fs.Func(name, "credit transfer "+name[len("transfer-"):]+" in euros (default "+a.String()+")", func(v string) error {
			x, err := charging.ParseAmount(v)
			if err == nil && x < 0 {
				err = errors.New("negative")
			}
			*a = x
			return err
		})
	}
	fs.DurationVar(&f.redrive.Interval, "redrive-interval", flows.DefaultRedriveInterval,
		"how often open redemptions, transfers and payments are re-driven while serving (0: only at start)")
	fs.DurationVar(&f.redrive.MinAge, "redrive-min-age", flows.DefaultRedriveMinAge,
		"how long such a record must be open with no request driving it before it is re-driven")
	fs.StringVar(&f.backupDir, "backup-dir", "", "`directory` of online backups (POST /v1/backups), one subdirectory each; outside --data (default: the config's backupDir, else DATA-backups beside --data)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to `file`, for go tool pprof (benchmarks)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	f.guard.FailuresMax = uint32(min(*failures, 1<<32-1))
	switch {
	case f.guard.FailuresMax == 0 || f.guard.Window < time.Second || f.guard.Bar < time.Second:
		return f, errors.New("--redeem-failures-max must be positive and --redeem-window, --redeem-bar at least 1s")
	case f.transfer.Min <= 0 || f.transfer.Max < f.transfer.Min || f.transfer.Max > charging.BalanceMax:
		return f, errors.New("transfers need 0 < --transfer-min <= --transfer-max")
	case f.redrive.Interval < 0 || f.redrive.MinAge < 10*time.Second:
		// Below twice the engine's 5 s request timeout, a re-drive could
		// overtake a leg of a live drive that timed out but still runs.
		return f, errors.New("--redrive-interval must not be negative and --redrive-min-age must be at least 10s")
	}
	return f, nil
}

// failpointEnv names the test-only failpoint: OCS_FAILPOINT=<name> (one of
// flows' Fail… names, e.g. transfer-after-debit) makes the process SIGKILL
// itself at that point of a flow, right after a durable step, so the crash
// tests can stop it exactly between two legs. Read once at start; unset in
// production. This is its only documentation and only reader.
const failpointEnv = "OCS_FAILPOINT"

func failpoint(log *slog.Logger) func(string) {
	name := os.Getenv(failpointEnv)
	if name == "" {
		return nil
	}
	log.Warn("test failpoint armed: the process will kill itself there", "failpoint", name)
	return func(at string) {
		if at == name {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way: no further step may run
		}
	}
}

func serve(args []string) error {
	f, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	gomaxprocs, from := procs.Set(os.Getenv)
	log.Info("go processors", "gomaxprocs", gomaxprocs, "from", from)
	if f.cpuProfile != "" {
		// Stopped when serve returns, after the orderly shutdown: a
		// SIGKILL loses the profile, never data.
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	conf, err := loadConfig(f.config)
	if err != nil {
		return err
	}
	cfg := conf.charging
	backupDir, err := backupDirOf(f.backupDir, conf.backup, f.data)
	if err != nil {
		return err
	}
	// A transfer's credit is a ChannelTransfer top-up: the channel must
	// accept exactly the amounts the transfer rules accept.
	cfg.Channels[charging.ChannelTransfer] = f.transfer.ChannelPolicy()
	started := time.Now()
	fresh := isFresh(f.data)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, err := storage.Open(f.data, storage.Options{Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("open %s: %w", f.data, err)
	}
	// A missing demo secret is replaced only in a database without
	// scratch cards (voucherSecret).
	secret, err := voucherSecret(f.voucherSecret, "--voucher-secret", f.data, store, log)
	if err != nil {
		_ = store.Close()
		return err
	}
	reg.MustRegister(storage.NewCollector(store))
	if err := bootstrapKey(store, fresh, log); err != nil {
		_ = store.Close()
		return err
	}

	engine, err := actors.Start(actors.Config{
		Store: engineStore{store}, Charging: &cfg, Logger: log, Registerer: reg,
		InflightMax: conf.engine.InflightMax, IdleAfter: time.Duration(conf.engine.IdleAfterSecs) * time.Second,
	})
	if err != nil {
		_ = store.Close()
		return err
	}
	issue3, err := startFlows(&f, secret, store, engine, reg, log)
	if err != nil {
		_ = engine.Stop()
		_ = store.Close()
		return err
	}
	catalogue := issue3.catalogue
	backups, err := storage.NewBackups(store, storage.BackupsOptions{Dir: backupDir, Registerer: reg, Logger: log})
	if err != nil {
		_ = engine.Stop()
		_ = store.Close()
		return err
	}
	// A backup's verification may read the whole database: shutdown
	// cancels it rather than wait (the copy is then set aside, unlisted).
	backupCtx, cancelBackup := context.WithCancel(context.Background())
	defer cancelBackup()
	api := httpapi.New(httpapi.Config{Engine: backupEngine{engine, backups, backupCtx}, Keys: keys{store}, Registerer: reg, Logger: log, Tariffs: cfg.Tariffs,
		Metrics:  fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})),
		USSD:     issue3.ussd.ServeHTTP,
		Vouchers: issue3.ops, Fixed: issue3.ops, VoucherGenerator: voucherGenerator{issue3.ops.v}, Catalogue: &catalogue})

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		_ = engine.Stop()
		_ = store.Close()
		return err
	}
	// Idempotency records older than the retention are pruned in the
	// background, once flows have recovered (they may need old records).
	prunerOpts := conf.pruner
	// The engine's own Vouchers: its guard policy and the locks its wrong
	// codes are counted under (storage/guard_prune.go).
	prunerOpts.Vouchers = issue3.ops.v
	pruner := startPruner(store, prunerOpts, reg, log)
	stopRedriver := func() {}
	if f.redrive.Interval > 0 {
		stopRedriver = issue3.flows.StartRedriver(f.redrive)
	}
	served := make(chan error, 1)
	go func() { served <- api.Serve(ln) }()
	log.Info("ocs ready", "listen", ln.Addr().String(), "data", f.data, "backups", backupDir, "startup", time.Since(started).Round(time.Millisecond),
		"accounts", store.Totals().Accounts)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	var runErr error
	select {
	case sig := <-signals:
		log.Info("shutting down", "signal", sig.String())
	case <-engine.Failed():
		runErr = engine.Err()
	case runErr = <-served:
	}
	pruner.Stop() // before the store closes under it
	cancelBackup()
	return shutdown(api, stopRedriver, engine, store, log, runErr)
}

// startPruner starts the pruner (idempotency records, the transfer
// request-key index and, with o.Vouchers, the redemption guards) with o,
// which loadConfig has validated, so NewPruner cannot refuse it.
func startPruner(store *storage.Store, o storage.PrunerOptions, reg prometheus.Registerer, log *slog.Logger) *storage.Pruner {
	o.Logger, o.Registerer = log, reg
	p, err := storage.NewPruner(store, o)
	if err != nil {
		panic("ocs: pruner settings passed loadConfig but were refused: " + err.Error())
	}
	p.Start()
	return p
}

// issue3 is what startFlows wires: the USSD gateway and the ops stores.
type issue3 struct {
	flows     *flows.Flows // its re-driver runs while serving
	ussd      *ussd.Handler
	ops       opsStores
	catalogue charging.Catalogue
}

// startFlows opens the voucher, transfer and fixed stores, finishes what a
// crash left half-way (before any request can see it), and builds the USSD
// handler.
func startFlows(f *serveFlags, secret []byte, store *storage.Store, engine *actors.Engine, reg prometheus.Registerer, log *slog.Logger) (issue3, error) {
	var w issue3
	v, err := storage.NewVouchers(store, [][]byte{secret}, f.guard)
	if errors.Is(err, storage.ErrVoucherSecretUnknown) {
		return w, fmt.Errorf("%w: is --voucher-secret the file the cards were generated with?", err)
	}
	if err != nil {
		return w, err
	}
	t, err := storage.NewTransfers(store)
	if err != nil {
		return w, err
	}
	fx, err := storage.NewFixed(store)
	if err != nil {
		return w, err
	}
	w.catalogue = charging.DemoCatalogue()
	fl := flows.New(flows.Config{Engine: engine, Vouchers: flowVouchers{v}, Transfers: t, Fixed: flowFixed{fx, store},
		Rules: f.transfer, Catalogue: w.catalogue, PaymentFee: charging.USSDPaymentFee, Logger: log, Registerer: reg,
		Failpoint: failpoint(log)})
	n, err := fl.Recover()
	if err != nil {
		return w, fmt.Errorf("recover vouchers, transfers and payments: %w", err)
	}
	if n != (flows.Recovered{}) {
		log.Info("finished operations a crash left half-way", "redemptions", n.Redemptions, "transfers", n.Transfers, "payments", n.Payments)
	}
	menu := ussd.DemoMenu()
	menu.Catalogue, menu.Transfer = w.catalogue, f.transfer
	w.ussd = ussd.NewHandler(ussdEngine{fl}, ussd.Options{Menu: menu})
	w.ops = opsStores{v: v, f: fx}
	w.flows = fl
	return w, nil
}

// voucherGenerator serves POST /v1/voucher-batches with the CLI's own
// storage.Vouchers.Generate: one generation path, one uniqueness check,
// one lock.
type voucherGenerator struct{ v *storage.Vouchers }

func (g voucherGenerator) GenerateBatch(b httpapi.VoucherBatch, now time.Time, csv io.Writer) error {
	_, err := g.v.Generate(storage.GenerateOptions{Batch: b.ID, Count: b.Count, Value: b.Value, Expiry: b.Expiry, Now: now}, csv)
	if errors.Is(err, storage.ErrVoucherBatchExists) {
		return httpapi.ErrExists
	}
	return err
}

// backupEngine is the engine the HTTP API serves: the actors' engine, plus
// online backups of the store (httpapi.Backups), which the actors do not
// know of.
type backupEngine struct {
	*actors.Engine
	backups *storage.Backups
	ctx     context.Context // cancelled at shutdown
}

func (e backupEngine) Take() (httpapi.BackupInfo, error) {
	b, err := e.backups.Take(e.ctx)
	if err != nil {
		return httpapi.BackupInfo{}, backupError(err)
	}
	return httpapi.BackupInfo(b), nil
}

func (e backupEngine) List() ([]httpapi.BackupInfo, error) {
	list, err := e.backups.List()
	if err != nil {
		return nil, backupError(err)
	}
	out := make([]httpapi.BackupInfo, len(list))
	for i, b := range list {
		out[i] = httpapi.BackupInfo(b)
	}
	return out, nil
}

// backupError maps storage's backup sentinels to the HTTP layer's.
func backupError(err error) error {
	switch {
	case errors.Is(err, storage.ErrBackupInProgress):
		return httpapi.ErrBackupInProgress
	case errors.Is(err, storage.ErrBackupDir):
		return fmt.Errorf("%w: %w", httpapi.ErrBackupDir, err)
	}
	return err
}

// shutdown stops in dependency order: no new requests, every request in
// flight answered (durably), the re-driver (after the record it is on), the
// engine's actors and committer, then the database. Nothing acknowledged is
// lost at any step; a record left open is re-driven at the next start.
func shutdown(api *httpapi.Server, stopRedriver func(), engine *actors.Engine, store *storage.Store, log *slog.Logger, runErr error) error {
	errs := []error{runErr}
	if err := api.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	stopRedriver()
	if err := engine.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("engine stop: %w", err))
	}
	if err := store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("storage close: %w", err))
	}
	err := errors.Join(errs...)
	if err == nil {
		log.Info("stopped cleanly")
	}
	return err
}

// isFresh reports whether dir holds no database yet.
func isFresh(dir string) bool {
	matches, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	return len(matches) == 0
}

// bootstrapKey installs the ops key from OCS_BOOTSTRAP_KEY, or on a fresh
// database makes one and prints it once: it is stored only as a hash.
func bootstrapKey(store *storage.Store, fresh bool, log *slog.Logger) error {
	if token := os.Getenv("OCS_BOOTSTRAP_KEY"); token != "" {
		return store.EnsureBootstrapKey(token)
	}
	if !fresh {
		return nil
	}
	token, err := store.IssueKey(uint8(httpapi.RoleOps))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\nOps API key (shown once, keep it): %s\n\n", token)
	log.Info("issued the first ops API key")
	return nil
}

// keys adapts the store's API keys to the HTTP layer's roles.
type keys struct{ s *storage.Store }

func (k keys) Role(token []byte) (httpapi.Role, bool) {
	r, ok := k.s.KeyRole(token)
	return httpapi.Role(r), ok
}

func (k keys) Issue(role httpapi.Role) (string, error) { return k.s.IssueKey(uint8(role)) }

// engineStore adapts *storage.Store to actors.Store: the two packages never
// import each other, so Apply's concrete *storage.Pending becomes the
// actors.Pending interface here.
type engineStore struct{ *storage.Store }

func (s engineStore) Apply(changes []charging.Change) (actors.Pending, error) {
	p, err := s.Store.Apply(changes)
	if p == nil {
		return nil, err
	}
	return p, err
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	out, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = out.Close()
	}, nil
}
