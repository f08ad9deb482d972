package beacon

import "unsafe"

// unsafeBytes and unsafeString avoid copies where the bytes are only read
// for the duration of a call (hashing, comparing).
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
