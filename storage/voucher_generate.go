package storage

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ocs-engine/ocs/charging"
)

// Limits of voucher generation.
const (
	// GenerateCountMax bounds one batch: serials are batch×10^7 + n, so a
	// batch holds fewer than 10^7 cards; a print run is far smaller.
	GenerateCountMax = 9_999_999
	// generateChunk codes are checked, written in one Pebble batch and
	// then printed: large enough to amortise a commit, small enough that
	// the in-chunk duplicate set stays a few hundred KiB.
	generateChunk = 8192
	// serialsPerBatch spaces batch serial ranges.
	serialsPerBatch = 10_000_000
)

// codeLimit is the largest multiple of 10^16 that fits a uint64: a random
// uint64 below it, taken modulo 10^16, gives each 16-digit code with the
// same probability (rejection sampling; 0.036% of draws are rejected).
const codeLimit = (1<<64 - 1) / 1e16 * 1e16

// GenerateOptions describes a batch to generate.
type GenerateOptions struct {
	Batch  uint32 // the batch number, new
	Count  int    // 1 … GenerateCountMax
	Value  charging.Amount
	Expiry time.Time // cards are redeemable strictly before
	Now    time.Time
	// Rand is the source of the codes; nil means crypto/rand. Tests pass a
	// deterministic reader to provoke collisions.
	Rand io.Reader
	// Progress, when not nil, is called after each chunk with the codes
	// written so far (the CLI draws a bar).
	Progress func(done, total int)
}

// ErrGenerate is wrapped by every refusal of bad generation options.
var ErrGenerate = errors.New("storage: bad voucher generation options")

// Generate creates a batch of cards and writes each clear code exactly
// once, to csv, as "serial,code,value,batch,expiry" rows after a header:
// the printer's file. The caller opens it (O_CREATE|O_EXCL, mode 0600) and
// hands it to the printer; the codes exist nowhere else.
//
// Uniqueness: every code is checked against the store under every secret
// and against the codes of its own chunk (earlier chunks are in the store
// already); a duplicate is drawn again. With 10^16 codes a duplicate is
// rare, but a duplicate would make two printed cards one voucher.
//
// Order and crash: each chunk is committed (no fsync) before its rows are
// printed, and the batch record last, synced (which syncs the whole WAL);
// so a printed code always exists once Generate returns nil. After a crash
// or a CSV write error the batch is incomplete: block it (BlockBatch) and
// generate a new one; no code of it was handed out.
func (v *Vouchers) Generate(opts GenerateOptions, csv io.Writer) (VoucherBatch, error) {
	batch := VoucherBatch{ID: opts.Batch, Value: opts.Value, Expiry: opts.Expiry.Unix(), Created: opts.Now.Unix()}
	switch {
	case opts.Count < 1 || opts.Count > GenerateCountMax:
		return batch, fmt.Errorf("%w: count %d not in 1…%d", ErrGenerate, opts.Count, GenerateCountMax)
	case !charging.ValidVoucherValue(opts.Value):
		return batch, fmt.Errorf("%w: value %v is no card value (5, 10, 20)", ErrGenerate, opts.Value)
	case !opts.Expiry.After(opts.Now):
		return batch, fmt.Errorf("%w: expiry %v is not after now", ErrGenerate, opts.Expiry)
	}
	if _, found, err := v.Batch(opts.Batch); err != nil || found {
		if err == nil {
			err = fmt.Errorf("%w: %d", ErrVoucherBatchExists, opts.Batch)
		}
		return batch, err
	}
	src := opts.Rand
	if src == nil {
		src = rand.Reader
	}
	g := generator{v: v, src: bufio.NewReaderSize(src, 8*generateChunk), seen: make(map[VoucherHash]struct{}, generateChunk)}
	out := bufio.NewWriterSize(csv, 1<<16)
	if _, err := out.WriteString("serial,code,value,batch,expiry\n"); err != nil {
		return batch, fmt.Errorf("storage: write voucher csv: %w", err)
	}
	expiry := opts.Expiry.UTC().Format(time.DateOnly)
	for done := 0; done < opts.Count; {
		n := min(generateChunk, opts.Count-done)
		if err := g.chunk(&batch, done, n, out, expiry); err != nil {
			return batch, err
		}
		done += n
		batch.Count = uint32(done)
		if opts.Progress != nil {
			opts.Progress(done, opts.Count)
		}
	}
	if err := out.Flush(); err != nil {
		return batch, fmt.Errorf("storage: write voucher csv: %w", err)
	}
	if err := v.db.Set(voucherBatchKey(nil, batch.ID), appendVoucherBatch(nil, &batch), pebble.Sync); err != nil {
		return batch, fmt.Errorf("storage: write voucher batch: %w", err)
	}
	return batch, nil
}

type generator struct {
	v    *Vouchers
	src  *bufio.Reader
	seen map[VoucherHash]struct{}
	rows []byte
}

// draw returns a uniformly random 16-digit code.
func (g *generator) draw() (charging.VoucherCode, error) {
	var c charging.VoucherCode
	var b [8]byte
	for {
		if _, err := io.ReadFull(g.src, b[:]); err != nil {
			return c, fmt.Errorf("storage: read randomness: %w", err)
		}
		x := binary.LittleEndian.Uint64(b[:])
		if x >= codeLimit {
			continue
		}
		x %= 1e16
		for i := len(c) - 1; i >= 0; i-- {
			c[i] = byte('0' + x%10)
			x /= 10
		}
		return c, nil
	}
}

// unique draws codes until one is in neither the chunk nor the store.
func (g *generator) unique() (charging.VoucherCode, VoucherHash, error) {
	var kb [voucherKeyLen]byte
	for {
		c, err := g.draw()
		if err != nil {
			return c, VoucherHash{}, err
		}
		h := g.v.Hash(c, 0)
		if _, dup := g.seen[h]; dup {
			continue
		}
		dup := false
		for i := range g.v.secrets {
			hi := h
			if i > 0 {
				hi = g.v.Hash(c, i)
			}
			_, found, err := getCopy(g.v.db, voucherKey(kb[:0], &hi))
			if err != nil {
				return c, h, fmt.Errorf("storage: check voucher: %w", err)
			}
			dup = dup || found
		}
		if !dup {
			g.seen[h] = struct{}{}
			return c, h, nil
		}
	}
}

// chunk generates codes first … first+n-1 of the batch.
func (g *generator) chunk(batch *VoucherBatch, first, n int, out *bufio.Writer, expiry string) error {
	clear(g.seen)
	b := g.v.db.NewBatch()
	defer b.Close()
	g.rows = g.rows[:0]
	var kb [voucherKeyLen]byte
	var vb [voucherLen]byte
	var sb [9]byte
	for i := first; i < first+n; i++ {
		c, h, err := g.unique()
		if err != nil {
			return err
		}
		serial := uint64(batch.ID)*serialsPerBatch + uint64(i) + 1
		rec := charging.Voucher{Batch: batch.ID, Serial: serial, Value: batch.Value, State: charging.VoucherActive, Expiry: batch.Expiry}
		_ = b.Set(voucherKey(kb[:0], &h), appendVoucher(vb[:0], &rec), nil)
		_ = b.Set(voucherSerialKey(sb[:0], serial), h[:], nil)
		g.rows = strconv.AppendUint(g.rows, serial, 10)
		g.rows = append(g.rows, ',')
		g.rows = append(g.rows, c[:]...)
		g.rows = append(g.rows, ',')
		g.rows = batch.Value.AppendText(g.rows)
		g.rows = append(g.rows, ',')
		g.rows = strconv.AppendUint(g.rows, uint64(batch.ID), 10)
		g.rows = append(g.rows, ',')
		g.rows = append(g.rows, expiry...)
		g.rows = append(g.rows, '\n')
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("storage: write vouchers: %w", err)
	}
	if _, err := out.Write(g.rows); err != nil {
		return fmt.Errorf("storage: write voucher csv: %w", err)
	}
	return nil
}
