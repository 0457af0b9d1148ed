package presence

import (
	"slices"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	doc := `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@x"><tuple id="t1"><status><basic>open</basic></status></tuple><tuple id="t2"><status><basic>closed</basic></status></tuple></presence>`
	recs := []Record{
		record("e1", Publication{Kind: KindPublication, ETag: "e1", Expires: now.Add(60 * time.Second), PIDF: doc}, now.Add(60*time.Second), time.Minute, false),
		record("e0", Publication{Kind: KindPublication, ETag: "e0", Expires: now.Add(-time.Second), PIDF: doc}, now, time.Minute, false),
		record("s1", Subscription{Kind: KindSubscription, Watcher: "bob@x", State: StateActive, RemoteTarget: "sip:bob@10.0.0.1", Expires: now.Add(30 * time.Second)}, now.Add(30*time.Second), time.Minute, false),
		record("s2", Subscription{Kind: KindSubscription, Watcher: "gone@x", State: StateActive, Expires: now.Add(30 * time.Second)}, now.Add(30*time.Second), time.Minute, true),
	}
	s := Summarize(recs, now)
	if len(s.Publications) != 1 || s.Publications[0].ETag != "e1" || s.Publications[0].Expires != 60 ||
		!slices.Equal(s.Publications[0].Status, []string{"t1=open", "t2=closed"}) {
		t.Errorf("publications: %+v (want e1 only, 60 s, t1=open t2=closed)", s.Publications)
	}
	if len(s.Watchers) != 1 || s.Watchers[0] != (WatcherSummary{Watcher: "bob@x", State: StateActive, Contact: "sip:bob@10.0.0.1", Expires: 30}) {
		t.Errorf("watchers: %+v (want bob@x only)", s.Watchers)
	}
}
