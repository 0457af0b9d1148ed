package node

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sipmesh/sipmesh/overlay/store"
)

// Admin paths for reading and writing stored records by hand, as an
// operator would with kamctl's "ul add/show/rm": batch shapes so that a
// script can move thousands of records in one request.
const (
	PathRecordsPut = "/v1/records/put"
	PathRecordsGet = "/v1/records/get"
)

// maxRecordsBody bounds one batch request.
const maxRecordsBody = 32 << 20

// RecordPutJSON is one record of a PathRecordsPut request.
type RecordPutJSON struct {
	Key       string          `json:"key"`
	ID        string          `json:"id"`
	Value     json.RawMessage `json:"value"`
	ExpiresIn int             `json:"expires_in,omitempty"` // seconds; 0: never
	Deleted   bool            `json:"deleted,omitempty"`
}

// RecordsPutJSON is the body of PathRecordsPut.
type RecordsPutJSON struct {
	Role    string          `json:"role"`
	Records []RecordPutJSON `json:"records"`
}

// RecordsGetJSON is the body of PathRecordsGet; the answer maps each key to
// its live records in the shape of LookupJSON.Records.
type RecordsGetJSON struct {
	Role string   `json:"role"`
	Keys []string `json:"keys"`
}

func (n *Node) storeFor(w http.ResponseWriter, role string) (*store.Store, bool) {
	s, ok := n.stores.Store(role)
	if !ok {
		writeJSON(w, http.StatusBadRequest, errorJSON{fmt.Sprintf("role %q keeps no records (stores: %v)", role, storedRoles)})
	}
	return s, ok
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRecordsBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, errorJSON{"bad request body: " + err.Error()})
		return false
	}
	return true
}

func (n *Node) handleRecordsPut(w http.ResponseWriter, r *http.Request) {
	var req RecordsPutJSON
	if !decodeBody(w, r, &req) {
		return
	}
	s, ok := n.storeFor(w, req.Role)
	if !ok {
		return
	}
	byKey := map[string][]store.Record{}
	var order []string
	now := time.Now()
	for i, rec := range req.Records {
		key := NormalizeKey(rec.Key)
		if key == "" || rec.ID == "" {
			writeJSON(w, http.StatusBadRequest, errorJSON{fmt.Sprintf("records[%d]: key and id are required", i)})
			return
		}
		sr := store.Record{ID: rec.ID, Value: []byte(rec.Value), Deleted: rec.Deleted}
		if rec.ExpiresIn > 0 {
			sr.Expires = now.Add(time.Duration(rec.ExpiresIn) * time.Second)
		}
		if _, seen := byKey[key]; !seen {
			order = append(order, key)
		}
		byKey[key] = append(byKey[key], sr)
	}
	for _, key := range order {
		if err := s.Put(r.Context(), key, byKey[key]...); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, errorJSON{fmt.Sprintf("put %s: %v", key, err)})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]int{"keys": len(order)})
}

func (n *Node) handleRecordsGet(w http.ResponseWriter, r *http.Request) {
	var req RecordsGetJSON
	if !decodeBody(w, r, &req) {
		return
	}
	s, ok := n.storeFor(w, req.Role)
	if !ok {
		return
	}
	keys := make([]string, len(req.Keys))
	for i, k := range req.Keys {
		keys[i] = NormalizeKey(k)
	}
	got, err := s.GetMany(r.Context(), keys)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, errorJSON{err.Error()})
		return
	}
	now := time.Now()
	out := make(map[string][]map[string]any, len(got))
	for k, recs := range got {
		list := make([]map[string]any, 0, len(recs))
		for _, rec := range recs {
			list = append(list, recordJSON(rec, now))
		}
		out[k] = list
	}
	writeJSON(w, http.StatusOK, out)
}
