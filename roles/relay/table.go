package relay

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteTable writes sessions as the text table of `sipmesh relay
// sessions`: one line per stream, with each party's latched address (or
// "-" before its first packet), the relay port it sends to, and the
// packets and losses counted from it.
func WriteTable(w io.Writer, sessions []SessionInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CALL-ID\tOWNER\tAGE\tIDLE\tSTREAM\tA PEER\tA RELAY\tA PKTS\tA LOST\tB PEER\tB RELAY\tB PKTS\tB LOST")
	for _, s := range sessions {
		owner := s.Owner
		if owner == "" {
			owner = "-"
		}
		age := now.Sub(s.Created).Round(time.Second)
		idle := (time.Duration(s.IdleSeconds * float64(time.Second))).Round(100 * time.Millisecond)
		for i, st := range s.Streams {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\n",
				s.CallID, owner, age, idle, i,
				orDash(st.A.Peer.String(), st.A.Peer.IsValid()), st.A.Relay, st.A.Packets, st.A.Lost,
				orDash(st.B.Peer.String(), st.B.Peer.IsValid()), st.B.Relay, st.B.Packets, st.B.Lost)
		}
	}
	return tw.Flush()
}

func orDash(s string, ok bool) string {
	if !ok {
		return "-"
	}
	return s
}
