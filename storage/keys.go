package storage

import (
	"encoding/binary"

	"github.com/ocs-engine/ocs/charging"
)

// Every key is built here and nowhere else, so that a partition prefix can
// be added in one place: today keyPrefixLen is 0; a 2-byte partition would
// make appendTable write it before the tag and every decoder below read the
// tag at keyPrefixLen.
const keyPrefixLen = 0

// Table tags: the first byte of every key (after the future partition
// prefix). Stored: never renumber. 0x10–0x1F are reserved for vouchers,
// fixed accounts and transfers, owned by another package author.
const (
	tagAccount  byte = 0x01 // | sub:8                 → Account
	tagJournal  byte = 0x02 // | sub:8 | seq:8         → Entry
	tagRequest  byte = 0x03 // | sub:8 | key bytes     → RequestRecord
	tagRefunded byte = 0x04 // | sub:8 | seq:8         → refund marker
	tagMeta     byte = 0x05 // | name                  → totals, API keys, schema
)

// Meta record names.
const (
	metaTotals = "totals"
	metaSchema = "schema"
	metaAPIKey = "apikey/" // + SHA-256 of the token
)

// Key sizes, for stack buffers.
const (
	accountKeyLen = keyPrefixLen + 1 + 8
	journalKeyLen = keyPrefixLen + 1 + 8 + 8
	requestKeyMax = keyPrefixLen + 1 + 8 + charging.RequestKeyBytesMax
	apiKeyKeyLen  = keyPrefixLen + 1 + len(metaAPIKey) + 32
)

func appendTable(dst []byte, tag byte) []byte { return append(dst, tag) }

func appendAccountKey(dst []byte, id charging.SubscriberID) []byte {
	return binary.BigEndian.AppendUint64(appendTable(dst, tagAccount), uint64(id))
}

func appendJournalKey(dst []byte, id charging.SubscriberID, seq uint64) []byte {
	dst = binary.BigEndian.AppendUint64(appendTable(dst, tagJournal), uint64(id))
	return binary.BigEndian.AppendUint64(dst, seq)
}

// appendJournalPrefix is the common prefix of id's journal keys.
func appendJournalPrefix(dst []byte, id charging.SubscriberID) []byte {
	return binary.BigEndian.AppendUint64(appendTable(dst, tagJournal), uint64(id))
}

func appendRequestKey(dst []byte, id charging.SubscriberID, key string) []byte {
	dst = binary.BigEndian.AppendUint64(appendTable(dst, tagRequest), uint64(id))
	return append(dst, key...)
}

func appendRefundedKey(dst []byte, id charging.SubscriberID, seq uint64) []byte {
	dst = binary.BigEndian.AppendUint64(appendTable(dst, tagRefunded), uint64(id))
	return binary.BigEndian.AppendUint64(dst, seq)
}

func appendMetaKey(dst []byte, name string) []byte {
	return append(appendTable(dst, tagMeta), name...)
}

func appendAPIKeyKey(dst []byte, hash *[32]byte) []byte {
	return append(appendMetaKey(dst, metaAPIKey), hash[:]...)
}

// tableStart returns the smallest key of table tag; tableStart(tag+1) is an
// exclusive upper bound of the table.
func tableStart(tag byte) []byte { return appendTable(nil, tag) }

// parseSubKey reads the table tag and subscriber of an account, journal,
// request or refunded key; ok is false if k is too short.
func parseSubKey(k []byte) (tag byte, id charging.SubscriberID, rest []byte, ok bool) {
	if len(k) < keyPrefixLen+9 {
		return 0, 0, nil, false
	}
	k = k[keyPrefixLen:]
	return k[0], charging.SubscriberID(binary.BigEndian.Uint64(k[1:9])), k[9:], true
}

// parseSeqKey reads a journal or refunded key.
func parseSeqKey(k []byte) (id charging.SubscriberID, seq uint64, ok bool) {
	_, id, rest, ok := parseSubKey(k)
	if !ok || len(rest) != 8 {
		return 0, 0, false
	}
	return id, binary.BigEndian.Uint64(rest), true
}
