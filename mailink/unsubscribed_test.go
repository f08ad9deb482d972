package mailink

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnsubscribedSurvivesARestartAndAKeyRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail-unsubscribed")
	u, err := OpenUnsubscribed(path, mustNew(t, keyA))
	if err != nil {
		t.Fatal(err)
	}
	if u.Has("m-1") {
		t.Fatal("a member is unsubscribed before any unsubscribe")
	}
	for range 2 {
		if err := u.Add("m-1"); err != nil {
			t.Fatal(err)
		}
	}
	if !u.Has("m-1") || u.Has("m-2") || u.Has("M-1") {
		t.Fatal("Has does not tell the unsubscribed member from others")
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), "m-1") || strings.Count(string(raw), "\n") != 1 {
		t.Fatalf("file holds %q: want one tag line, no member ID", raw)
	}
	// A restart with the key rotated (the old key kept to verify).
	again, err := OpenUnsubscribed(path, mustNew(t, keyB, keyA))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Has("m-1") || again.Has("m-2") {
		t.Fatal("the unsubscribe is lost across a restart with a rotated key")
	}
	// Control: without the old key the tag no longer matches.
	if other, _ := OpenUnsubscribed(path, mustNew(t, keyB)); other.Has("m-1") {
		t.Fatal("a tag matches under a key it was not made with")
	}
}

func TestUnsubscribedSkipsDamagedLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u")
	u, _ := OpenUnsubscribed(path, mustNew(t, keyA))
	_ = u.Add("m-1")
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("zz\nnot hex not hex not hex not he\n0123")
	f.Close()
	again, err := OpenUnsubscribed(path, mustNew(t, keyA))
	if err != nil || !again.Has("m-1") {
		t.Fatalf("a damaged tail loses the good lines: %v", err)
	}
}
