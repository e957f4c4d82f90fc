package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/storage"
	"github.com/schollz/progressbar/v3"
)

// The voucher secret: the HMAC key under which card codes are stored
// (storage/voucher.go). It is read from a file, never a flag (flags show in
// ps) and never stored in the database, so a stolen database yields no
// code. Create one with
//
//	head -c 32 /dev/urandom > voucher.key && chmod 600 voucher.key
//
// and give the same file to `ocs vouchers generate --secret-file` and to
// `ocs serve --voucher-secret`. Back it up apart from the database: losing
// it makes every unredeemed card unredeemable.
//
// For the demo, `ocs serve` without --voucher-secret uses DIR/voucher.key
// in its data directory, creating it (32 random bytes, mode 0600) on first
// start and saying so in the log; `ocs vouchers generate` without
// --secret-file uses the same file, so the two agree out of the box.
// Either creates it only while the database holds no scratch card
// (voucherSecret): once cards exist, a missing secret is an error to fix,
// never a file to make up.

// defaultSecretName is the demo secret's file name in the data directory.
const defaultSecretName = "voucher.key"

// voucherSecretBytesMax bounds the file read: a secret is 32–64 bytes; a
// large file is a wrong path.
const voucherSecretBytesMax = 1024

// readSecret reads a secret file and refuses a short one.
func readSecret(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("voucher secret: %w", err)
	}
	if info.Size() > voucherSecretBytesMax {
		return nil, fmt.Errorf("voucher secret %s: %d bytes, more than %d: is this the right file?", path, info.Size(), voucherSecretBytesMax)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("voucher secret: %w", err)
	}
	if len(b) < storage.VoucherSecretBytesMin {
		return nil, fmt.Errorf("voucher secret %s: %d bytes, need at least %d (head -c 32 /dev/urandom > %s)",
			path, len(b), storage.VoucherSecretBytesMin, path)
	}
	return b, nil
}

// voucherSecret returns the secret at path, or the data directory's demo
// secret when path is empty. flagName names the option that sets path, for the
// messages (--voucher-secret or --secret-file).
//
// The demo secret is created only when it is missing and the database in
// dataDir holds no scratch card at all (a fresh installation): a database
// with cards was hashed under some secret, and a new one would make every
// unused card unredeemable without a sign until subscribers complain. That
// is what a restore from a backup (which never holds the secret) or a
// mistyped --data leaves, so voucherSecret refuses then and says what to do.
// store is the database of dataDir, where it looks for cards.
func voucherSecret(path, flagName, dataDir string, store *storage.Store, log *slog.Logger) ([]byte, error) {
	if path != "" {
		b, err := readSecret(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("voucher secret %s does not exist: restore it from its own backup, or point %s at the file the cards were generated with", path, flagName)
		case err == nil:
			if info, _ := os.Stat(path); info != nil && info.Mode().Perm()&0o077 != 0 {
				log.Warn("voucher secret is readable by group or others: chmod 600", "file", path)
			}
		}
		return b, err
	}
	path = filepath.Join(dataDir, defaultSecretName)
	b, err := readSecret(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	cards, err := store.HoldsVouchers()
	if err != nil {
		return nil, fmt.Errorf("voucher secret %s is missing, and looking for scratch cards in %s failed: %w", path, dataDir, err)
	}
	if cards {
		return nil, fmt.Errorf("%w: %s is missing, but the database in %s holds scratch cards hashed under a secret; "+
			"a new secret would make every unused card unredeemable, so none was created. "+
			"Restore the secret file from its own backup to %s, or point %s at it "+
			"(a database restored from a backup never holds the secret)",
			errSecretLost, path, dataDir, path, flagName)
	}
	return createSecret(path, log)
}

// errSecretLost is voucherSecret's refusal to replace the secret of a
// database that holds scratch cards.
var errSecretLost = errors.New("voucher secret lost")

// createSecret writes a new demo secret (32 random bytes, mode 0600) to
// path, which must not exist, in the data directory (the open store's).
func createSecret(path string, log *slog.Logger) ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("voucher secret: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("voucher secret: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	log.Warn("created a demo voucher secret in the data directory; in production pass --voucher-secret and back it up apart from the database",
		"file", path)
	return b, nil
}

func vouchers(args []string) error {
	if len(args) == 0 {
		return errors.New("vouchers: generate or block")
	}
	switch args[0] {
	case "generate":
		return vouchersGenerate(args[1:])
	case "block":
		return vouchersBlock(args[1:])
	}
	return fmt.Errorf("vouchers: unknown subcommand %q (generate, block)", args[0])
}

func vouchersGenerate(args []string) error {
	fs := flag.NewFlagSet("vouchers generate", flag.ContinueOnError)
	count := fs.Int("count", 0, "number of cards (1 … 9,999,999)")
	value := fs.Int("value", 0, "face value in euros: 5, 10 or 20")
	batch := fs.Uint("batch", 0, "batch number, new (1 … 4294967295)")
	expiry := fs.String("expiry", "", "last day the cards are redeemable, YYYY-MM-DD (UTC; redeemable until the end of that day)")
	secretFile := fs.String("secret-file", "", "voucher secret file (default: DATA/voucher.key, as ocs serve uses; created only while the database holds no card)")
	out := fs.String("out", "", "CSV file for the printer, created (must not exist), mode 0600")
	data := fs.String("data", "./data", "directory of the Pebble database (ocs serve must not be running on it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	day, err := time.Parse(time.DateOnly, *expiry)
	switch {
	case *count < 1 || *count > storage.GenerateCountMax:
		return fmt.Errorf("--count must be 1 … %d", storage.GenerateCountMax)
	case !charging.ValidVoucherValue(charging.Euros(int64(*value))):
		return errors.New("--value must be 5, 10 or 20")
	case *batch == 0 || *batch > 1<<32-1:
		return errors.New("--batch must be 1 … 4294967295")
	case err != nil:
		return errors.New("--expiry must be a date YYYY-MM-DD")
	case *out == "":
		return errors.New("--out is required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := storage.Open(*data, storage.Options{})
	if err != nil {
		return fmt.Errorf("open %s: %w", *data, err)
	}
	defer store.Close()
	secret, err := voucherSecret(*secretFile, "--secret-file", *data, store, log)
	if err != nil {
		return err
	}
	csv, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	v, err := storage.NewVouchers(store, [][]byte{secret}, charging.DefaultGuardPolicy())
	if err != nil {
		_ = csv.Close()
		return err
	}
	bar := progressbar.NewOptions(*count, progressbar.OptionSetDescription("codes"), progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionThrottle(100*time.Millisecond))
	start := time.Now()
	b, err := v.Generate(storage.GenerateOptions{Batch: uint32(*batch), Count: *count, Value: charging.Euros(int64(*value)),
		Expiry: day.Add(24 * time.Hour), Now: time.Now(), Progress: func(done, _ int) { _ = bar.Set(done) }}, csv)
	if err != nil {
		_ = csv.Close()
		return fmt.Errorf("generate (block batch %d before printing anything from %s): %w", *batch, *out, err)
	}
	if err := csv.Sync(); err != nil {
		return err
	}
	if err := csv.Close(); err != nil {
		return err
	}
	_ = bar.Finish()
	took := time.Since(start)
	fmt.Fprintf(os.Stderr, "\nbatch %d: %d cards of %s EUR, expiring %s, written to %s in %v (%.0f codes/s)\n",
		b.ID, b.Count, b.Value, *expiry, *out, took.Round(time.Millisecond), float64(b.Count)/took.Seconds())
	return nil
}

func vouchersBlock(args []string) error {
	fs := flag.NewFlagSet("vouchers block", flag.ContinueOnError)
	serial := fs.Uint64("serial", 0, "block the card with this serial")
	batch := fs.Uint("batch", 0, "block every card of this batch")
	data := fs.String("data", "./data", "directory of the Pebble database (ocs serve must not be running on it; use the ops API then)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*serial == 0) == (*batch == 0) || *batch > 1<<32-1 {
		return errors.New("vouchers block: give exactly one of --serial or --batch")
	}
	store, err := storage.Open(*data, storage.Options{})
	if err != nil {
		return fmt.Errorf("open %s: %w", *data, err)
	}
	defer store.Close()
	v, err := storage.NewVoucherBlocker(store) // blocking reads no code
	if err != nil {
		return err
	}
	if *batch != 0 {
		if err := v.BlockBatch(uint32(*batch)); err != nil {
			return err
		}
		fmt.Printf("batch %d blocked\n", *batch)
		return nil
	}
	state, err := v.Block(*serial)
	if err != nil {
		return err
	}
	fmt.Printf("card %s: %v\n", strconv.FormatUint(*serial, 10), state)
	return nil
}
