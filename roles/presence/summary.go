package presence

import (
	"encoding/xml"
	"strings"
	"time"
)

// Summary is what an operator wants to see of a presentity (`sipmesh
// lookup --role presence`): its live publications and its watchers.
type Summary struct {
	Publications []PublicationSummary `json:"publications"`
	Watchers     []WatcherSummary     `json:"watchers"`
}

// PublicationSummary is one publication (RFC 3903) of a presentity.
type PublicationSummary struct {
	ETag string `json:"etag"`
	// Status lists "tuple-id=basic" of the PIDF tuples (RFC 3863 §4.1.4).
	Status  []string `json:"status"`
	Expires int      `json:"expires"` // seconds left
}

// WatcherSummary is one subscription (RFC 6665) to a presentity.
type WatcherSummary struct {
	Watcher string `json:"watcher"`
	State   string `json:"state"`
	Contact string `json:"contact"`
	Expires int    `json:"expires"` // seconds left
}

// Summarize reads a presentity's store records at now; records past their
// value's expiry (kept for the grace period) are left out.
func Summarize(recs []Record, now time.Time) Summary {
	v := decode(recs, now)
	s := Summary{Publications: []PublicationSummary{}, Watchers: []WatcherSummary{}}
	for _, p := range v.pubs {
		s.Publications = append(s.Publications, PublicationSummary{
			ETag: p.ETag, Status: basicStatus(p.PIDF), Expires: secondsLeft(p.Expires, now),
		})
	}
	for _, w := range v.subs {
		s.Watchers = append(s.Watchers, WatcherSummary{
			Watcher: w.Watcher, State: w.State, Contact: w.RemoteTarget, Expires: secondsLeft(w.Expires, now),
		})
	}
	return s
}

func secondsLeft(t, now time.Time) int { return int(t.Sub(now).Round(time.Second).Seconds()) }

// basicStatus returns "id=basic" for each tuple of a PIDF document.
func basicStatus(doc string) []string {
	d, err := parsePIDF([]byte(doc))
	if err != nil {
		return []string{}
	}
	out := make([]string, 0, len(d.Tuples))
	for _, t := range d.Tuples {
		var st struct {
			Basic string `xml:"status>basic"`
		}
		// The tuple's inner XML without its element: wrap it to parse.
		xml.Unmarshal([]byte("<t>"+string(t.Inner)+"</t>"), &st)
		out = append(out, t.attr("id")+"="+strings.TrimSpace(st.Basic))
	}
	return out
}
