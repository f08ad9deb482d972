package logship

import (
	"strings"
	"testing"
)

func TestTopicNamesFollowKafkasRule(t *testing.T) {
	t.Parallel()
	// 1 to 249 of [a-zA-Z0-9._-], and neither "." nor "..": the edges of
	// each range taken, the characters just outside refused.
	for _, topic := range []string{"a", strings.Repeat("a", 249), "azAZ09._-", ".a", "..."} {
		if !validTopic(topic) {
			t.Errorf("topic %q refused", topic)
		}
	}
	for _, topic := range []string{"", strings.Repeat("a", 250), ".", "..", "a b", "`", "{", "@", "[", "/", ":", "é"} {
		if validTopic(topic) {
			t.Errorf("topic %q accepted", topic)
		}
	}
}
