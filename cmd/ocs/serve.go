package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ocs-engine/ocs/actors"
	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/protocols/httpapi"
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
}

func parseServeFlags(args []string) (serveFlags, error) {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&f.data, "data", "./data", "directory of the Pebble database")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address of the HTTP API and /metrics")
	fs.StringVar(&f.config, "config", "", "JSON configuration file (default: the embedded demo; see `ocs config`)")
	return f, fs.Parse(args)
}

func serve(args []string) error {
	f, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, engineCfg, err := loadConfig(f.config)
	if err != nil {
		return err
	}
	started := time.Now()
	fresh := isFresh(f.data)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, err := storage.Open(f.data, storage.Options{Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("open %s: %w", f.data, err)
	}
	reg.MustRegister(storage.NewCollector(store))
	if err := bootstrapKey(store, fresh, log); err != nil {
		_ = store.Close()
		return err
	}

	engine, err := actors.Start(actors.Config{
		Store: engineStore{store}, Charging: &cfg, Logger: log, Registerer: reg,
		InflightMax: engineCfg.InflightMax, IdleAfter: time.Duration(engineCfg.IdleAfterSecs) * time.Second,
	})
	if err != nil {
		_ = store.Close()
		return err
	}
	api := httpapi.New(httpapi.Config{Engine: engine, Keys: keys{store}, Registerer: reg, Logger: log, Tariffs: cfg.Tariffs,
		Metrics: fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))})

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		_ = engine.Stop()
		_ = store.Close()
		return err
	}
	served := make(chan error, 1)
	go func() { served <- api.Serve(ln) }()
	log.Info("ocs ready", "listen", ln.Addr().String(), "data", f.data, "startup", time.Since(started).Round(time.Millisecond),
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
	return shutdown(api, engine, store, log, runErr)
}

// shutdown stops in dependency order: no new requests, every request in
// flight answered (durably), the engine's actors and committer, then the
// database. Nothing acknowledged is lost at any step.
func shutdown(api *httpapi.Server, engine *actors.Engine, store *storage.Store, log *slog.Logger, runErr error) error {
	errs := []error{runErr}
	if err := api.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
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
