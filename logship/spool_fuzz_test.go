package logship

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"
)

// buildSegment returns a segment of format 2 holding n records whose
// values grow by step bytes, and where each record starts.
func buildSegment(n int, step int, first uint64) ([]byte, []span) {
	b := make([]byte, segmentHeaderLen)
	putHeader(b, first)
	var spans []span
	for i := range n {
		key, value := fmt.Sprintf("k%d", i%5), fmt.Sprintf("v%d-%0*d", i, i*step%300, 0)
		off := int64(len(b))
		b = binary.LittleEndian.AppendUint32(b, uint32(bodyFixedLen+len(key)+len(value)))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint64(b, first+uint64(i))
		b = binary.LittleEndian.AppendUint64(b, uint64(i))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(key)))
		b = append(append(b, key...), value...)
		binary.LittleEndian.PutUint32(b[off+4:], crc32.Checksum(b[off+8:], crcTable))
		spans = append(spans, span{off: off, size: int64(len(b)) - off, value: value})
	}
	return b, spans
}

// FuzzScanSegment damages a segment at random and checks that the scan at
// open ends, keeps every record whose bytes were not touched, and counts
// exactly the records it lost.
func FuzzScanSegment(f *testing.F) {
	f.Add(uint8(50), uint8(7), []byte{0, 200, 3, 0x5a})                        // a flipped byte
	f.Add(uint8(50), uint8(7), []byte{0, 100, 255, 0, 4, 0, 255, 0})           // zeroed runs
	f.Add(uint8(200), uint8(1), []byte{0x10, 0x00, 8, 0xff, 0x30, 0x00, 1, 1}) // two places
	f.Add(uint8(10), uint8(0), []byte{0xff, 0xff, 255, 0x01})                  // the tail
	f.Add(uint8(30), uint8(3), []byte{0, 2, 1, 0x80})                          // the header
	f.Fuzz(func(t *testing.T, n, step uint8, damage []byte) {
		const first = 1000
		b, spans := buildSegment(int(n), int(step), first)
		touched := make([]bool, len(b))
		for i := 0; i+4 <= len(damage) && i < 64; i += 4 {
			off := int(binary.BigEndian.Uint16(damage[i:])) % len(b)
			for j := off; j < min(len(b), off+int(damage[i+2])+1); j++ {
				if damage[i+3] == 0 {
					b[j] = 0
				} else {
					b[j] ^= damage[i+3]
				}
				touched[j] = true
			}
		}
		start, hdr := readHeader(b)
		if hdr != headerOK {
			start = 0
		}
		r := scanEntries(b, segmentHeaderLen, false, start, 0, -1)
		if r.end > int64(len(b)) || r.end < segmentHeaderLen && len(b) >= segmentHeaderLen {
			t.Fatalf("end %d outside the segment of %d bytes", r.end, len(b))
		}

		// Walk what the scan kept, as the reader will after the repair.
		kept := map[int64]bool{}
		forged := false
		p, runs := int64(segmentHeaderLen), r.damage
		for p < r.end {
			if len(runs) > 0 && p == runs[0].from {
				if runs[0].to <= p || runs[0].to > r.end {
					t.Fatalf("damage run %+v out of order", runs[0])
				}
				p, runs = runs[0].to, runs[1:]
				continue
			}
			size, _, skip, st := entryAt(b[p:], r.end-p, false)
			if st != entryOK || skip {
				t.Fatalf("at %d, between the scan's damage runs: %v", p, st)
			}
			kept[p] = true
			if i := spanAt(spans, p); i < 0 || spans[i].size != size {
				forged = true // damage that passes for an entry: never in practice
			}
			p += size
		}
		if len(runs) > 0 {
			t.Fatalf("damage runs %+v past the end %d", runs, r.end)
		}

		var lost uint64
		for _, sp := range spans {
			intact := true
			for j := sp.off; j < sp.off+sp.size; j++ {
				intact = intact && !touched[j]
			}
			if !kept[sp.off] {
				lost++
				if intact && !forged {
					t.Fatalf("the intact record at %d was not kept", sp.off)
				}
			}
		}
		if forged || hdr != headerOK {
			return
		}
		counted := r.gaps
		for _, d := range r.damage {
			counted += d.lost
		}
		// A damaged tail's records are counted by the segment after it.
		tail := uint64(0)
		for _, sp := range spans {
			if sp.off >= r.end {
				tail++
			}
		}
		if counted+tail != lost {
			t.Fatalf("lost %d records, counted %d in the middle and %d in the tail", lost, counted, tail)
		}
	})
}

func spanAt(spans []span, off int64) int {
	for i, sp := range spans {
		if sp.off == off {
			return i
		}
	}
	return -1
}

// FuzzParseEntries feeds arbitrary bytes to the entry parser and the
// resynchronisation: they must neither crash nor run past their input.
func FuzzParseEntries(f *testing.F) {
	seg, _ := buildSegment(5, 3, 1)
	f.Add(seg[segmentHeaderLen:], uint64(1), false)
	f.Add(seg[segmentHeaderLen:], uint64(0), true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1}, uint64(7), false)
	f.Fuzz(func(t *testing.T, b []byte, expect uint64, v1 bool) {
		out, p := parseEntries(b, int64(len(b)), v1, expect, nil, 1<<20, 1<<30)
		if p.consumed > int64(len(b)) || p.consumed < 0 {
			t.Fatalf("consumed %d of %d bytes", p.consumed, len(b))
		}
		for _, e := range out {
			if len(e.Key)+len(e.Value) > len(b) {
				t.Fatal("an entry larger than its input")
			}
		}
		if c, _, ok := resync(b, 0, expect); ok && (c <= 0 || c >= int64(len(b))) {
			t.Fatalf("resynchronised at %d of %d bytes", c, len(b))
		}
		r := scanEntries(append(make([]byte, segmentHeaderLen), b...), segmentHeaderLen, v1, expect, 0, 5)
		if r.end > int64(len(b))+segmentHeaderLen {
			t.Fatalf("scan ended at %d past %d bytes", r.end, len(b)+segmentHeaderLen)
		}
	})
}
