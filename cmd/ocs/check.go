package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/ocs-engine/ocs/storage"
)

// errInconsistent is check's answer for a database whose records break an
// invariant: main exits 1 with the first violation.
var errInconsistent = errors.New("check: the database is inconsistent")

// check verifies a stopped engine's database (storage.Store.Check): every
// record decodes, each journal adds up to its balance, the ledger totals
// equal the sum of the accounts, and every scratch card, transfer and
// *101# payment agrees with its journal legs. The operator's tool after a
// crash, a restore from a backup or a disk alarm, before serving again.
// Ctrl-C stops it.
//
// It never writes to the directory it checks, which is often a backup or
// a crashed engine's directory kept as evidence: the store is opened
// read-only (storage.Options.ReadOnly), which replays the write-ahead log
// in memory, as a restart would, and changes no file, not even the lock.
// A running engine on the directory makes it refuse.
func check(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	data := fs.String("data", "./data", "directory of the Pebble database (ocs serve must not be running on it); never written to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("check: unexpected argument %q", fs.Arg(0))
	}
	// A mistyped directory must not pass as a healthy, empty one (the
	// read-only open refuses a directory without a database too).
	if _, err := os.Stat(*data); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	store, err := storage.Open(*data, storage.Options{ReadOnly: true})
	switch {
	case errors.Is(err, storage.ErrInUse):
		return fmt.Errorf("check: %s is in use (is ocs serve running on it?): stop the engine first", *data)
	case errors.Is(err, storage.ErrNoDatabase):
		return fmt.Errorf("check: %s holds no database", *data)
	}
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer store.Close()
	if err := store.Check(ctx); err != nil {
		if errors.Is(err, storage.ErrCorrupt) {
			return fmt.Errorf("%w: %w", errInconsistent, err)
		}
		return fmt.Errorf("check: %w", err)
	}
	t := store.Totals()
	fmt.Fprintf(out, "consistent: %d accounts, %s EUR owed, checked in %v\n", t.Accounts, t.Owed, time.Since(start).Round(time.Millisecond))
	return nil
}
