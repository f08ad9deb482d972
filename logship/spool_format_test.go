package logship

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"
)

// entry returns one entry of format 2 with sequence number seq; keyLen,
// when not negative, replaces the key length written.
func entry(seq uint64, key, value string, keyLen int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(bodyFixedLen+len(key)+len(value)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = binary.LittleEndian.AppendUint64(b, 12345)
	if keyLen < 0 {
		keyLen = len(key)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(keyLen))
	b = append(append(b, key...), value...)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], crcTable))
	return b
}

// skipEntry returns a skip entry of size bytes, header included.
func skipEntry(size int64, seq uint64) []byte {
	b := make([]byte, size)
	putSkip(b, size, seq)
	return b
}

func TestEntryAtOnTheFormatsEdges(t *testing.T) {
	t.Parallel()
	// Each case is an entry or bytes at the very edge of what is valid,
	// read with room bytes to the segment's end.
	intact := entry(7, "key", "value", -1)
	cases := []struct {
		name string
		b    []byte
		room int64 // 0: len(b)
		size int64
		skip bool
		st   entryStatus
	}{
		{"an intact entry", intact, 0, int64(len(intact)), false, entryOK},
		{"an entry with room to spare", intact, 1000, int64(len(intact)), false, entryOK},
		{"an entry a byte longer than the room", intact, int64(len(intact)) - 1, 0, false, entryBad},
		{"an entry cut short, more in the segment", intact[:len(intact)-1], int64(len(intact)), 0, false, entryPast},
		{"an empty key and value: the shortest entry", entry(7, "", "", -1), 0, minEntryLen, false, entryOK},
		{"an empty value", entry(7, "key", "", -1), 0, minEntryLen + 3, false, entryOK},
		{"a key length past the body, its CRC right", entry(7, "key", "", 4), 0, 0, false, entryBad},
		{"a key length far past the body, its CRC right", entry(7, "key", "value", 0xffff), 0, 0, false, entryBad},
		{"a body length under the fixed part", func() []byte {
			b := entry(7, "", "", -1)
			binary.LittleEndian.PutUint32(b, bodyFixedLen-1)
			return b
		}(), 0, 0, false, entryBad},
		{"a skip entry that is a header alone, at the segment's end", skipEntry(entryHeaderLen, 9), 0, entryHeaderLen, true, entryOK},
		{"a skip entry to the segment's end", skipEntry(100, 9), 0, 100, true, entryOK},
		{"a skip entry a byte past the segment's end", skipEntry(100, 9), 99, 0, false, entryBad},
		{"a skip entry with a wrong CRC", func() []byte { b := skipEntry(100, 9); b[12] ^= 1; return b }(), 0, 0, false, entryBad},
		{"zeros shorter than an entry header, at the segment's end", make([]byte, 10), 0, 0, false, entryZeros},
		{"zeros shorter than an entry header, more in the segment", make([]byte, 10), 100, 0, false, entryPast},
		{"bytes shorter than an entry header, at the segment's end", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 0, 0, false, entryBad},
		{"seven zero bytes at the segment's end", make([]byte, 7), 0, 0, false, entryZeros},
		{"seven bytes at the segment's end", []byte{0, 0, 0, 0, 0, 0, 1}, 0, 0, false, entryBad},
		{"an all-zero entry header", make([]byte, 64), 0, 0, false, entryZeros},
	}
	for _, c := range cases {
		room := c.room
		if room == 0 {
			room = int64(len(c.b))
		}
		b := c.b[:min(int64(len(c.b)), room)]
		size, _, skip, st := entryAt(b, room, false)
		if st != c.st || st == entryOK && (size != c.size || skip != c.skip) {
			t.Errorf("%s: size %d, skip %v, %v; want %d, %v, %v", c.name, size, skip, st, c.size, c.skip, c.st)
		}
	}
}

func TestParseEntriesThroughSkipEntriesAndEmptyRecords(t *testing.T) {
	t.Parallel()
	// Records with empty keys and values, a skip entry of a header alone
	// and a longer one between them: parsed in order, the skip entries
	// setting the sequence number expected next.
	var b []byte
	b = append(b, entry(5, "", "", -1)...)
	b = append(b, skipEntry(entryHeaderLen, 7)...) // records 6 lost, counted when it was written
	b = append(b, entry(7, "k", "", -1)...)
	b = append(b, skipEntry(40, 9)...)
	b = append(b, entry(9, "", "v", -1)...)
	out, p := parseEntries(b, int64(len(b)), false, 5, nil, 100, 1<<20)
	if p.status != entryOK || p.consumed != int64(len(b)) || p.expect != 10 || len(out) != 3 {
		t.Fatalf("parsed %d entries, %+v", len(out), p)
	}
	got := []string{string(out[0].Key) + "/" + string(out[0].Value), string(out[1].Key) + "/" + string(out[1].Value), string(out[2].Key) + "/" + string(out[2].Value)}
	if !slices.Equal(got, []string{"/", "k/", "/v"}) {
		t.Fatalf("parsed %q", got)
	}
	// A record past the sequence number expected is a gap.
	_, p = parseEntries(b, int64(len(b)), false, 4, nil, 100, 1<<20)
	if p.status != entryGap || p.seq != 5 || p.consumed != 0 {
		t.Fatalf("from 4: %+v, want a gap at 5", p)
	}
	// An entry whose length runs past the segment's end, after intact
	// ones: damage, measured against the room left where it starts, not
	// where the bytes start.
	long := entry(10, "", "0123456789", -1)
	past := append(append([]byte{}, b...), long[:len(long)-1]...)
	out, p = parseEntries(past, int64(len(past)), false, 5, nil, 100, 1<<20)
	if p.status != entryBad || p.consumed != int64(len(b)) || len(out) != 3 {
		t.Fatalf("an entry past the end: parsed %d entries, %+v; want 3, then damage at %d", len(out), p, len(b))
	}
}

func TestResyncFindsTheNextEntryAfterDamage(t *testing.T) {
	t.Parallel()
	// Damage at a; resync must find the first intact entry after it whose
	// sequence number is plausible: at least the one expected and no more
	// records past it than the bytes between could have held (one per
	// minEntryLen bytes).
	short := entry(1, "", "", -1) // minEntryLen bytes
	var b []byte
	for i := range 6 {
		b = append(b, entry(uint64(10+i), "", "", -1)...)
	}
	b[3*len(short)+20] ^= 1 // record 13 damaged
	c, seq, ok := resync(b, 3*int64(len(short)), 13)
	if !ok || c != 4*int64(len(short)) || seq != 14 {
		t.Fatalf("resync: %d %d %v; want record 14 at %d", c, seq, ok, 4*len(short))
	}
	// The shortest entries: a record one entry's length after the damage
	// may be one record past the expected one.
	c, seq, ok = resync(b, 3*int64(len(short)), 14)
	if !ok || seq != 14 {
		t.Fatalf("expecting 14: %d %d %v", c, seq, ok)
	}
	// A sequence number past what the bytes could hold is no entry here.
	far := append(append([]byte{}, make([]byte, minEntryLen)...), entry(20, "", "", -1)...)
	if c, seq, ok := resync(far, 0, 10); ok {
		t.Fatalf("took record %d at %d, 10 records past the expected one after %d bytes", seq, c, minEntryLen)
	}
	// The bound counts from the damage, not from the segment's start.
	farther := append(make([]byte, 300), far...)
	if c, seq, ok := resync(farther, 300, 10); ok {
		t.Fatalf("took record %d at %d, 10 records past the expected one after %d bytes", seq, c, minEntryLen)
	}
	// A skip entry running past the segment's end is no entry.
	cut := append(make([]byte, 32), skipEntry(100, 3)[:60]...)
	cut[0] = 1
	if c, seq, ok := resync(cut, 0, 3); ok {
		t.Fatalf("took a skip entry cut short at %d (seq %d)", c, seq)
	}
	// A skip entry of a header alone at the very end is found.
	tail := append(make([]byte, 32), skipEntry(entryHeaderLen, 3)...)
	tail[0] = 1
	if c, seq, ok := resync(tail, 0, 3); !ok || c != 32 || seq != 3 {
		t.Fatalf("the skip entry at the end: %d %d %v", c, seq, ok)
	}
}

func TestAllZero(t *testing.T) {
	t.Parallel()
	for n := range 20 {
		b := make([]byte, n)
		if !allZero(b) {
			t.Fatalf("%d zeros", n)
		}
		for i := range n {
			b[i] = 1
			if allZero(b) {
				t.Fatalf("%d bytes with byte %d set", n, i)
			}
			b[i] = 0
		}
	}
}
