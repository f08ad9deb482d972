package main

import (
	"strings"
	"testing"
)

func TestTextReportShowsRecordsPerEdge(t *testing.T) {
	rep := Report{Sites: []Site{{Host: "www.b2s.com", Records: 3}}, Edges: []EdgeRecords{{"", 1}, {"fra-1", 2}}}
	var b strings.Builder
	if err := writeText(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"records by edge   records\n", "(none)                  1\n", "fra-1                   2\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	rep.Edges = nil
	if err := writeText(&b, rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "by edge") {
		t.Errorf("records that name no edge get an edge table:\n%s", b.String())
	}
}
