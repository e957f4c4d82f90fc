package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/storage"
)

// fileConfig is the --config file: JSON, every field optional, amounts as
// decimal strings ("0.05") so that no euro passes through a float.
type fileConfig struct {
	GraceDays          int                    `json:"graceDays"`
	InitialValidityDay int                    `json:"initialValidityDays"`
	QuotaValiditySecs  int                    `json:"quotaValiditySeconds"`
	ReservationSlackS  int                    `json:"reservationSlackSeconds"`
	Tiers              []fileTier             `json:"validityTiers"`
	Channels           map[string]fileChannel `json:"channels"`
	Tariffs            map[string]fileTariff  `json:"tariffs"`
	Engine             fileEngine             `json:"engine"`
	// BackupDir is where POST /v1/backups writes, one subdirectory per
	// backup; --backup-dir overrides it. Empty: DATA-backups (backupDirOf).
	BackupDir string `json:"backupDir,omitempty"`
}

type fileTier struct {
	From string `json:"from"`
	Days int    `json:"days"`
}

type fileChannel struct {
	Enabled         bool   `json:"enabled"`
	Min             string `json:"min"`
	Max             string `json:"max"`
	ExtendsValidity bool   `json:"extendsValidity"`
}

type fileTariff struct {
	Name           string `json:"name"`
	Unit           string `json:"unit"` // seconds | bytes | events
	Price          string `json:"price"`
	PriceUnits     uint64 `json:"priceUnits"`
	FirstIncrement uint64 `json:"firstIncrement"`
	Increment      uint64 `json:"increment"`
	Incoming       bool   `json:"incoming"`
	DefaultGrant   uint64 `json:"defaultGrant"`
}

type fileEngine struct {
	InflightMax   int `json:"inflightMax"`
	IdleAfterSecs int `json:"idleAfterSeconds"`
	// RequestRetention is how long idempotency records are kept, a Go
	// duration ("168h"; at least "24h"): a retry that arrives later is
	// charged as new. Empty: storage.RequestRetentionDefault (7 days).
	RequestRetention string `json:"requestRetention,omitempty"`
	// RequestPruneInterval is the pause between two pruning passes over
	// the idempotency records ("1h"; at least "1s"). Empty: an hour.
	RequestPruneInterval string `json:"requestPruneInterval,omitempty"`
}

// pruneIntervalMin keeps a misconfigured interval from turning the pruner,
// which reads the whole request table per pass, into a busy loop.
const pruneIntervalMin = time.Second

// prunerOptions returns the idempotency pruner's settings of e (request
// records and the transfer request-key index), validated; empty fields are
// storage's defaults.
func (e *fileEngine) prunerOptions() (storage.PrunerOptions, error) {
	var o storage.PrunerOptions
	if e.RequestRetention != "" {
		d, err := time.ParseDuration(e.RequestRetention)
		if err != nil {
			return o, fmt.Errorf("engine.requestRetention %q: want a duration such as \"168h\"", e.RequestRetention)
		}
		if err := storage.ValidateRetention(d); err != nil {
			return o, fmt.Errorf("engine.requestRetention: %w", err)
		}
		o.Retention = d
	}
	if e.RequestPruneInterval != "" {
		d, err := time.ParseDuration(e.RequestPruneInterval)
		if err != nil || d < pruneIntervalMin {
			return o, fmt.Errorf("engine.requestPruneInterval %q: want a duration of at least %v, such as \"1h\"",
				e.RequestPruneInterval, pruneIntervalMin)
		}
		o.Interval = d
	}
	return o, nil
}

var unitNames = map[charging.UnitKind]string{charging.UnitSeconds: "seconds", charging.UnitBytes: "bytes", charging.UnitEvents: "events"}

// toFile renders a charging.Config in the file's shape.
func toFile(c *charging.Config) fileConfig {
	f := fileConfig{
		GraceDays:          int(c.GracePeriod / (24 * time.Hour)),
		InitialValidityDay: int(c.InitialValidity / (24 * time.Hour)),
		QuotaValiditySecs:  int(c.QuotaValidity / time.Second),
		ReservationSlackS:  int(c.ReservationSlack / time.Second),
		Channels:           map[string]fileChannel{},
		Tariffs:            map[string]fileTariff{},
		Engine:             fileEngine{},
	}
	for _, t := range c.Tiers {
		f.Tiers = append(f.Tiers, fileTier{From: t.From.String(), Days: t.Days})
	}
	for _, ch := range charging.Channels() {
		p := c.Channels[ch]
		if p.Enabled {
			f.Channels[ch.String()] = fileChannel{Enabled: true, Min: p.Min.String(), Max: p.Max.String(), ExtendsValidity: p.ExtendsValidity}
		}
	}
	for rg, t := range c.Tariffs {
		f.Tariffs[strconv.FormatUint(uint64(rg), 10)] = fileTariff{Name: t.Name, Unit: unitNames[t.Unit], Price: t.Price.String(),
			PriceUnits: t.PriceUnits, FirstIncrement: t.FirstIncrement, Increment: t.Increment, Incoming: t.Incoming, DefaultGrant: t.DefaultGrant}
	}
	return f
}

func printConfig(w io.Writer) error {
	c := charging.DemoConfig()
	f := toFile(&c)
	f.Engine = fileEngine{InflightMax: 4096, IdleAfterSecs: 120,
		RequestRetention: storage.RequestRetentionDefault.String(), RequestPruneInterval: storage.PruneIntervalDefault.String()}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(f)
}

// config is a loaded configuration, validated.
type config struct {
	charging charging.Config
	engine   fileEngine
	pruner   storage.PrunerOptions // engine's retention settings, parsed
	backup   string                // the file's backupDir, "" if none
}

// loadConfig returns the demo configuration, overlaid with path when given.
// Unknown fields are refused: a misspelt tariff must not pass silently.
func loadConfig(path string) (config, error) {
	c := config{charging: charging.DemoConfig()}
	if path == "" {
		return c, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	var f fileConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := apply(&c.charging, &f); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.charging.Validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if c.pruner, err = f.Engine.prunerOptions(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	c.engine = f.Engine
	c.backup = f.BackupDir
	return c, nil
}

// backupDirOf resolves the backup directory: the flag, else the config
// file's backupDir, else DATA-backups. The default sits beside the data
// directory, so that it is on the same file system (a backup's tables are
// then hard links, not copies) and outside it (restoring copies the data
// directory whole, and a backup inside it would be copied into every
// later backup's restore). It is named after the data directory, so that
// two engines on one host never mix their backups in one directory. A
// directory that is, or is inside, the data directory is refused.
func backupDirOf(flag, file, data string) (string, error) {
	dir := flag
	if dir == "" {
		dir = file
	}
	if dir == "" {
		dir = filepath.Clean(data) + "-backups"
	}
	absDir, err1 := filepath.Abs(dir)
	absData, err2 := filepath.Abs(data)
	if err := errors.Join(err1, err2); err != nil {
		return "", fmt.Errorf("backup directory: %w", err)
	}
	if rel, err := filepath.Rel(absData, absDir); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("backup directory %s is inside the data directory %s: choose one beside it (--backup-dir)", dir, data)
	}
	return filepath.Clean(dir), nil
}

func apply(c *charging.Config, f *fileConfig) error {
	if f.GraceDays > 0 {
		c.GracePeriod = charging.Days(f.GraceDays)
	}
	if f.InitialValidityDay > 0 {
		c.InitialValidity = charging.Days(f.InitialValidityDay)
	}
	if f.QuotaValiditySecs > 0 {
		c.QuotaValidity = time.Duration(f.QuotaValiditySecs) * time.Second
	}
	if f.ReservationSlackS > 0 {
		c.ReservationSlack = time.Duration(f.ReservationSlackS) * time.Second
	}
	if len(f.Tiers) > 0 {
		c.Tiers = nil
		for _, t := range f.Tiers {
			from, err := charging.ParseAmount(t.From)
			if err != nil || t.Days <= 0 {
				return fmt.Errorf("validity tier %q/%d: amount and positive days required", t.From, t.Days)
			}
			if n := len(c.Tiers); n > 0 && from <= c.Tiers[n-1].From {
				return errors.New("validity tiers must ascend by amount")
			}
			c.Tiers = append(c.Tiers, charging.ValidityTier{From: from, Days: t.Days})
		}
	}
	for name, fc := range f.Channels {
		ch, ok := charging.ParseChannel(name)
		if !ok {
			return fmt.Errorf("unknown channel %q", name)
		}
		lo, err1 := charging.ParseAmount(fc.Min)
		hi, err2 := charging.ParseAmount(fc.Max)
		if err1 != nil || err2 != nil || lo <= 0 || hi < lo {
			return fmt.Errorf("channel %s: min and max must be amounts with 0 < min <= max", name)
		}
		c.Channels[ch] = charging.ChannelPolicy{Enabled: fc.Enabled, Min: lo, Max: hi, ExtendsValidity: fc.ExtendsValidity}
	}
	if len(f.Tariffs) > 0 {
		c.Tariffs = map[charging.RatingGroup]charging.Tariff{}
		for rgText, ft := range f.Tariffs {
			rg, err := strconv.ParseUint(rgText, 10, 32)
			if err != nil {
				return fmt.Errorf("tariff key %q: a rating group number", rgText)
			}
			t, err := tariffOf(ft)
			if err != nil {
				return fmt.Errorf("tariff %s: %w", rgText, err)
			}
			c.Tariffs[charging.RatingGroup(rg)] = t
		}
	}
	return nil
}

func tariffOf(ft fileTariff) (charging.Tariff, error) {
	t := charging.Tariff{Name: ft.Name, PriceUnits: ft.PriceUnits, FirstIncrement: ft.FirstIncrement,
		Increment: ft.Increment, Incoming: ft.Incoming, DefaultGrant: ft.DefaultGrant}
	for k, n := range unitNames {
		if n == ft.Unit {
			t.Unit = k
		}
	}
	if t.Unit == 0 {
		return t, fmt.Errorf("unit %q: seconds, bytes or events", ft.Unit)
	}
	if ft.Price != "" {
		p, err := charging.ParseAmount(ft.Price)
		if err != nil || p < 0 {
			return t, fmt.Errorf("price %q: %v", ft.Price, err)
		}
		t.Price = p
	}
	if t.PriceUnits == 0 || t.Increment == 0 {
		return t, errors.New("priceUnits and increment must be positive")
	}
	return t, nil
}
