package storage

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
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
// One Generate runs at a time per Vouchers (two concurrent batches could
// otherwise draw the same code between their checks).
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
	v.generating.Lock()
	defer v.generating.Unlock()
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
	g := generator{v: v, src: bufio.NewReaderSize(src, 8*generateChunk), seen: make(map[VoucherHash]struct{}, generateChunk),
		prev: make(map[VoucherHash]struct{}, generateChunk)}
	out := bufio.NewWriterSize(csv, 1<<16)
	if _, err := out.WriteString("serial,code,value,batch,expiry\n"); err != nil {
		return batch, fmt.Errorf("storage: write voucher csv: %w", err)
	}
	expiry := opts.Expiry.UTC().Format(time.DateOnly)
	// Before any card: a card is never on disk without the record of the
	// secret it was hashed under (checkSecrets).
	if err := v.db.Set(voucherSecretKey(v.secrets[0]), nil, pebble.Sync); err != nil {
		return batch, fmt.Errorf("storage: record the voucher secret: %w", err)
	}
	if err := g.run(&batch, opts, out, expiry); err != nil {
		return batch, err
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
	v     *Vouchers
	src   *bufio.Reader
	seen  map[VoucherHash]struct{} // codes of the chunk being prepared
	prev  map[VoucherHash]struct{} // codes of the chunk being committed
	codes []drawn
	slots [2]slot
	buf   [8]byte // randomness of one draw; a field so it does not escape per draw
}

// draw returns a uniformly random 16-digit code.
func (g *generator) draw() (charging.VoucherCode, error) {
	var c charging.VoucherCode
	for {
		if _, err := io.ReadFull(g.src, g.buf[:]); err != nil {
			return c, fmt.Errorf("storage: read randomness: %w", err)
		}
		x := binary.LittleEndian.Uint64(g.buf[:])
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

// fresh reports whether no card has hash h under secret 0 nor code c
// under any other secret.
func (g *generator) fresh(c charging.VoucherCode, h *VoucherHash) (bool, error) {
	var kb [voucherKeyLen]byte
	for i := range g.v.secrets {
		hi := *h
		if i > 0 {
			hi = g.v.Hash(c, i)
		}
		_, found, err := getCopy(g.v.db, voucherKey(kb[:0], &hi))
		if err != nil {
			return false, fmt.Errorf("storage: check voucher: %w", err)
		}
		if found {
			return false, nil
		}
	}
	return true, nil
}

type drawn struct {
	code charging.VoucherCode
	hash VoucherHash
}

// draws fills g.codes with n codes unique within this chunk and the one
// being committed, sorted by hash.
func (g *generator) draws(n int) error {
	g.codes = g.codes[:0]
	for len(g.codes) < n {
		c, err := g.draw()
		if err != nil {
			return err
		}
		h := g.v.Hash(c, 0)
		if g.known(&h) {
			continue
		}
		g.seen[h] = struct{}{}
		g.codes = append(g.codes, drawn{c, h})
	}
	slices.SortFunc(g.codes, func(a, b drawn) int { return bytes.Compare(a.hash[:], b.hash[:]) })
	return nil
}

// dedupStore replaces every drawn code that some card already has. The
// check walks the sorted chunk with one iterator (one SeekGE per code, in
// ascending order, instead of a fresh point lookup each): most of the
// generation cost was Pebble's per-Get setup. A replacement is checked
// with point lookups (it is rare: about n²/10^16).
func (g *generator) dedupStore() error {
	it, err := g.v.db.NewIter(&pebble.IterOptions{LowerBound: tableStart(tagVoucher), UpperBound: tableStart(tagVoucher + 1)})
	if err != nil {
		return fmt.Errorf("storage: check vouchers: %w", err)
	}
	var kb [voucherKeyLen]byte
	var taken []int
	for i := range g.codes {
		k := voucherKey(kb[:0], &g.codes[i].hash)
		if it.SeekGE(k) && bytes.Equal(it.Key(), k) {
			taken = append(taken, i)
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("storage: check vouchers: %w", err)
	}
	for i := range g.codes {
		if len(g.v.secrets) == 1 {
			break
		}
		// Older secrets: point lookups (rotation is rare, batches few).
		if ok, err := g.fresh(g.codes[i].code, &g.codes[i].hash); err != nil {
			return err
		} else if !ok && !slices.Contains(taken, i) {
			taken = append(taken, i)
		}
	}
	for _, i := range taken {
		for {
			c, err := g.draw()
			if err != nil {
				return err
			}
			h := g.v.Hash(c, 0)
			if g.known(&h) {
				continue
			}
			ok, err := g.fresh(c, &h)
			if err != nil {
				return err
			}
			if ok {
				g.seen[h] = struct{}{}
				g.codes[i] = drawn{c, h}
				break
			}
		}
	}
	return nil
}

// known reports whether h is in the chunk being prepared or the one being
// committed (which the store may not show yet).
func (g *generator) known(h *VoucherHash) bool {
	_, a := g.seen[*h]
	_, b := g.prev[*h]
	return a || b
}

// slot is one chunk between preparation and print: its Pebble batch and
// its CSV rows. Two slots let chunk k commit while chunk k+1 is drawn,
// hashed and checked, so both cores work.
type slot struct {
	batch *pebble.Batch
	rows  []byte
	n     int
	errc  chan error
}

// run generates the batch's chunks in a two-stage pipeline: prepare chunk
// k+1 while chunk k commits; print chunk k's rows only after its commit.
func (g *generator) run(batch *VoucherBatch, opts GenerateOptions, out *bufio.Writer, expiry string) error {
	var inflight *slot
	finish := func() error {
		if inflight == nil {
			return nil
		}
		s := inflight
		inflight = nil
		err := <-s.errc
		_ = s.batch.Close()
		if err != nil {
			return fmt.Errorf("storage: write vouchers: %w", err)
		}
		if _, err := out.Write(s.rows); err != nil {
			return fmt.Errorf("storage: write voucher csv: %w", err)
		}
		batch.Count += uint32(s.n)
		if opts.Progress != nil {
			opts.Progress(int(batch.Count), opts.Count)
		}
		return nil
	}
	defer func() { _ = finish() }() // an error path still waits for its commit
	for k, done := 0, 0; done < opts.Count; k++ {
		s := &g.slots[k%2]
		s.n = min(generateChunk, opts.Count-done)
		if err := g.prepare(s, batch, done, expiry); err != nil {
			return err
		}
		done += s.n
		if err := finish(); err != nil {
			return err
		}
		if s.errc == nil {
			s.errc = make(chan error, 1)
		}
		go func(b *pebble.Batch, errc chan<- error) { errc <- b.Commit(pebble.NoSync) }(s.batch, s.errc)
		inflight = s
		g.seen, g.prev = g.prev, g.seen
		clear(g.seen)
	}
	return finish()
}

// prepare draws, checks and encodes codes first … first+s.n-1 of the
// batch into s. Serials follow the hash order within a chunk, which leaks
// nothing: the hash is keyed.
func (g *generator) prepare(s *slot, batch *VoucherBatch, first int, expiry string) error {
	if err := g.draws(s.n); err != nil {
		return err
	}
	if err := g.dedupStore(); err != nil {
		return err
	}
	s.batch = g.v.db.NewBatch()
	s.rows = s.rows[:0]
	var kb [voucherKeyLen]byte
	var vb [voucherLen]byte
	var sb [9]byte
	for j := range g.codes {
		c, h := g.codes[j].code, g.codes[j].hash
		serial := uint64(batch.ID)*serialsPerBatch + uint64(first+j) + 1
		rec := charging.Voucher{Batch: batch.ID, Serial: serial, Value: batch.Value, State: charging.VoucherActive, Expiry: batch.Expiry}
		_ = s.batch.Set(voucherKey(kb[:0], &h), appendVoucher(vb[:0], &rec), nil)
		_ = s.batch.Set(voucherSerialKey(sb[:0], serial), h[:], nil)
		s.rows = strconv.AppendUint(s.rows, serial, 10)
		s.rows = append(s.rows, ',')
		s.rows = append(s.rows, c[:]...)
		s.rows = append(s.rows, ',')
		s.rows = batch.Value.AppendText(s.rows)
		s.rows = append(s.rows, ',')
		s.rows = strconv.AppendUint(s.rows, uint64(batch.ID), 10)
		s.rows = append(s.rows, ',')
		s.rows = append(s.rows, expiry...)
		s.rows = append(s.rows, '\n')
	}
	return nil
}
