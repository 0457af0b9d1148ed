package sipmsg

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Parse is New().Parse(data): the default checks on one datagram.
func Parse(data []byte) (sip.Message, error) {
	return New().Parse(data)
}

// Parse reads the SIP message in one datagram (UDP, or a WebSocket message).
//
// The body is Content-Length octets after the empty line, octets beyond it
// are ignored (RFC 3261 §18.3, RFC 4475 §3.1.1.8); fewer octets than
// Content-Length is 400 (RFC 4475 §3.1.2.2); without Content-Length the body
// is the rest of the datagram.
//
// On success the message is a *sip.Request or *sip.Response and the error is
// nil. On failure the error is a *sipstatus.Error: when it asks for a
// response (Code != 0) the returned message is the *sip.Request as far as it
// could be read, enough for sipstatus.Response; when it asks for a drop the
// message may be nil.
func (v *Validator) Parse(data []byte) (sip.Message, error) {
	var head, rest []byte
	noBlank := false
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		head, rest = data[:i], data[i+4:]
	} else {
		head, noBlank = data, true
	}
	if len(head) > v.maxMessageSize {
		return nil, sipstatus.Drop(&Defect{Field: "message", Problem: "header section larger than the maximum message size"})
	}
	r := v.readHead(head)
	if r.msg == nil {
		return nil, r.err
	}
	err := r.err
	body := rest
	switch {
	case err != nil:
	case noBlank:
		err = badField("message", "no empty line after the header fields")
	case len(data) > v.maxMessageSize:
		err = sipstatus.MessageTooLarge(&Defect{Field: "message", Problem: fmt.Sprintf("%d octets exceed the maximum of %d", len(data), v.maxMessageSize)})
	case r.clCount == 1:
		if r.contentLength > len(rest) {
			err = badField("Content-Length", fmt.Sprintf("%d is larger than the %d octets of body received", r.contentLength, len(rest)))
		} else {
			body = rest[:r.contentLength]
		}
	}
	return v.finish(r.msg, body, err)
}

// ParseStream reads the first message of a stream (TCP, TLS) buffer and
// reports how many octets it used. CRLFs before the start line (keep-alives,
// RFC 3261 §7.5, RFC 5626 §3.5.1) are skipped and counted.
//
// It returns ErrIncomplete (with n == 0) while the buffer holds less than one
// message. Content-Length is mandatory on streams (RFC 3261 §18.3, §20.14);
// when it is missing or invalid the message boundary is lost: the error also
// matches ErrFraming, a response may still be returned, and the connection
// must be closed afterwards. Other errors are as for Parse, with n covering
// the rejected message so that reading can continue.
func (v *Validator) ParseStream(buf []byte) (msg sip.Message, n int, err error) {
	skip := 0
	for len(buf)-skip >= 2 && buf[skip] == '\r' && buf[skip+1] == '\n' {
		skip += 2
	}
	data := buf[skip:]
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		if len(data) > v.maxMessageSize {
			return nil, 0, sipstatus.Drop(fmt.Errorf("%w: %w", ErrFraming, &Defect{Field: "message", Problem: "no end of header section within the maximum message size"}))
		}
		if skip > 0 && len(data) == 0 {
			return nil, skip, ErrIncomplete
		}
		return nil, 0, ErrIncomplete
	}
	head := data[:end]
	if len(head) > v.maxMessageSize {
		return nil, 0, sipstatus.Drop(fmt.Errorf("%w: %w", ErrFraming, &Defect{Field: "message", Problem: "header section larger than the maximum message size"}))
	}
	r := v.readHead(head)
	if r.msg == nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrFraming, r.err)
	}
	if r.clCount != 1 || r.clErr {
		framing := r.err
		switch {
		case r.clErr:
		case r.clCount == 0:
			framing = missingField("Content-Length")
		default:
			framing = multipleField("Content-Length")
		}
		_, ferr := v.finish(r.msg, nil, framing)
		return r.msg, 0, fmt.Errorf("%w: %w", ErrFraming, ferr)
	}
	total := skip + end + 4 + r.contentLength
	if r.contentLength > v.maxMessageSize {
		_, ferr := v.finish(r.msg, nil, sipstatus.MessageTooLarge(&Defect{Field: "Content-Length", Problem: "body larger than the maximum message size"}))
		return r.msg, 0, fmt.Errorf("%w: %w", ErrFraming, ferr)
	}
	if len(buf) < total {
		return nil, 0, ErrIncomplete
	}
	body := data[end+4 : end+4+r.contentLength]
	msg, err = v.finish(r.msg, body, r.err)
	return msg, total, err
}

// finish attaches the body, runs the semantic checks when the syntax was
// clean, and turns an error into a drop when no response can be sent.
func (v *Validator) finish(msg sip.Message, body []byte, err error) (sip.Message, error) {
	if err == nil {
		if len(body) > 0 {
			msg.SetBody(bytes.Clone(body))
		} else {
			msg.SetBody(nil)
		}
		err = v.Validate(msg)
	}
	if err == nil {
		return msg, nil
	}
	var se *sipstatus.Error
	if !errors.As(err, &se) {
		se = sipstatus.BadRequest("", err)
		err = se
	}
	if se.Dropped() {
		return msg, err
	}
	req, ok := msg.(*sip.Request)
	switch {
	case !ok:
		// RFC 3261 §18.1.2: a malformed response is discarded.
		err = sipstatus.Drop(err)
	case req.IsAck():
		// RFC 3261 §17: an ACK is never answered.
		err = sipstatus.Drop(err)
	case req.Via() == nil:
		// Nowhere to send a response to.
		err = sipstatus.Drop(err)
	}
	v.log.Debug("sipmsg: rejected message", "error", err)
	return msg, err
}

// reading is the result of reading a header section.
type reading struct {
	msg           sip.Message // nil when the start line is unrecognisable
	err           error       // first defect: start line, version, header syntax
	contentLength int
	clCount       int
	clErr         bool
	fixed         *fixedHeaders
}

// fixedHeaders holds the single-valued header fields that nearly every
// message carries, so that a message's are one allocation rather than one
// each; a second field of a kind, a defect anyway, gets its own. Apart
// from the reading, which refers to the message: a response that shares
// the request's From keeps these alive, not the request.
type fixedHeaders struct {
	to            sip.ToHeader
	from          sip.FromHeader
	callID        sip.CallIDHeader
	cseq          sip.CSeqHeader
	maxForwards   sip.MaxForwardsHeader
	contentLength sip.ContentLengthHeader
	used          uint8 // fixedTo, … : slots given out
}

const (
	fixedTo uint8 = 1 << iota
	fixedFrom
	fixedCallID
	fixedCSeq
	fixedMaxForwards
	fixedContentLength
)

// slot returns the fixed slot for kind when it is still free, else a new
// value of its own.
func slot[T any](f *fixedHeaders, kind uint8, in *T) *T {
	if f.used&kind != 0 {
		return new(T)
	}
	f.used |= kind
	return in
}

func (r *reading) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// readHead reads the start line and the header fields.
func (v *Validator) readHead(head []byte) *reading {
	r := &reading{fixed: new(fixedHeaders)}
	text := string(head)
	first, fields, _ := strings.Cut(text, "\r\n")
	sl, err := parseStartLine(first)
	if err != nil {
		r.err = sipstatus.Drop(err)
		return r
	}
	switch {
	case sl.request:
		req := sip.NewRequest(sip.RequestMethod(sl.method), sl.uri)
		// The version was checked (sl.versionErr); the message carries
		// ours so that even a 505 is written as SIP/2.0.
		req.SipVersion = "SIP/2.0"
		r.msg = req
	default:
		res := sip.NewResponse(sl.status, sl.reason)
		res.SipVersion = sl.version
		r.msg = res
	}
	r.fail(sl.defect)
	if sl.versionErr != nil {
		r.fail(sl.versionErr)
	}
	// Every CR and LF is one of a CRLF pair, else one is bare.
	breaks := strings.Count(text, "\r\n")
	if strings.Count(text, "\r") != breaks || strings.Count(text, "\n") != breaks {
		r.fail(badField("message", "bare CR or LF"))
	}
	if !utf8.ValidString(text) {
		r.fail(badField("message", "header section is not valid UTF-8"))
	}
	hdrs, err := splitHeaders(fields, breaks)
	if err != nil {
		r.fail(badField("message", err.Error()))
	}
	for _, h := range hdrs {
		if err := v.addHeader(r, h); err != nil {
			r.fail(err)
		}
	}
	return r
}

// addHeader parses one header field strictly and appends the sipgo header(s)
// built from that parse. A field that fails is kept as a generic header,
// except that an unreadable first Via is salvaged when possible so that a
// 400 can still be routed back.
func (v *Validator) addHeader(r *reading, h headerLine) error {
	msg := r.msg
	var one [1]address
	switch h.name {
	case "Via":
		vias, err := parseVias(h.value)
		if err != nil {
			if msg.Via() == nil {
				if sv, ok := salvageVia(h.value); ok {
					msg.AppendHeader(sipVia(sv))
				}
			}
			return badField("Via", err.Error())
		}
		for _, vp := range vias {
			msg.AppendHeader(sipVia(vp))
		}
	case "To", "From":
		as, err := parseAddresses(one[:0], h.value, false, false)
		if err != nil {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField(h.name, err.Error())
		}
		a := as[0]
		if a.wildcard {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField(h.name, "wildcard URI")
		}
		if h.name == "To" {
			to := slot(r.fixed, fixedTo, &r.fixed.to)
			*to = sip.ToHeader{DisplayName: a.display, Address: sipURI(a.uri), Params: sipParams(a.params)}
			msg.AppendHeader(to)
		} else {
			from := slot(r.fixed, fixedFrom, &r.fixed.from)
			*from = sip.FromHeader{DisplayName: a.display, Address: sipURI(a.uri), Params: sipParams(a.params)}
			msg.AppendHeader(from)
		}
	case "Contact":
		as, err := parseAddresses(one[:0], h.value, true, false)
		if err != nil {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField("Contact", err.Error())
		}
		for _, a := range as {
			if a.wildcard {
				if len(as) > 1 || a.display != "" {
					return badField("Contact", "wildcard mixed with other values")
				}
				var u sip.Uri
				_ = sip.ParseUri("*", &u)
				msg.AppendHeader(&sip.ContactHeader{Address: u, Params: sipParams(a.params)})
				continue
			}
			msg.AppendHeader(&sip.ContactHeader{DisplayName: a.display, Address: sipURI(a.uri), Params: sipParams(a.params)})
		}
	case "Route", "Record-Route", "Path":
		as, err := parseAddresses(one[:0], h.value, true, true)
		if err != nil {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField(h.name, err.Error())
		}
		for _, a := range as {
			switch h.name {
			case "Route":
				msg.AppendHeader(&sip.RouteHeader{Address: sipURI(a.uri)})
			case "Record-Route":
				msg.AppendHeader(&sip.RecordRouteHeader{Address: sipURI(a.uri)})
			default:
				msg.AppendHeader(sip.NewHeader("Path", "<"+a.uri.text+">"+paramString(a.params)))
			}
		}
	case "Call-ID":
		if err := parseCallID(h.value); err != nil {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField("Call-ID", err.Error())
		}
		cid := slot(r.fixed, fixedCallID, &r.fixed.callID)
		*cid = sip.CallIDHeader(h.value)
		msg.AppendHeader(cid)
	case "CSeq":
		num, method, err := parseCSeq(h.value)
		if err != nil {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField("CSeq", err.Error())
		}
		cseq := slot(r.fixed, fixedCSeq, &r.fixed.cseq)
		*cseq = sip.CSeqHeader{SeqNo: num, MethodName: sip.RequestMethod(method)}
		msg.AppendHeader(cseq)
	case "Max-Forwards":
		n, ok := parseUint(h.value, 255)
		if !ok {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField("Max-Forwards", "not a number from 0 to 255")
		}
		mf := slot(r.fixed, fixedMaxForwards, &r.fixed.maxForwards)
		*mf = sip.MaxForwardsHeader(n)
		msg.AppendHeader(mf)
	case "Content-Length":
		r.clCount++
		n, ok := parseUint(h.value, uint64(v.maxMessageSize))
		if !ok {
			r.clErr = true
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			if isDigits(h.value) {
				return sipstatus.MessageTooLarge(&Defect{Field: "Content-Length", Problem: "larger than the maximum message size"})
			}
			return badField("Content-Length", "not a non-negative number")
		}
		r.contentLength = int(n)
		cl := slot(r.fixed, fixedContentLength, &r.fixed.contentLength)
		*cl = sip.ContentLengthHeader(n)
		msg.AppendHeader(cl)
	case "Content-Type":
		mt, err := parseMediaType(h.value)
		if err != nil {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField("Content-Type", err.Error())
		}
		ct := sip.ContentTypeHeader(mt)
		msg.AppendHeader(&ct)
	case "Date":
		msg.AppendHeader(sip.NewHeader(h.name, h.value))
		if err := checkDate(h.value); err != nil {
			return badField("Date", err.Error())
		}
	case "Expires", "Min-Expires":
		msg.AppendHeader(sip.NewHeader(h.name, h.value))
		if !isDigits(h.value) {
			return badField(h.name, "not a number of seconds")
		}
	case "Require", "Proxy-Require", "Supported", "Unsupported":
		tags, err := tokenList(h.value, h.name == "Supported")
		if err != nil {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField(h.name, err.Error())
		}
		msg.AppendHeader(sip.NewHeader(h.name, strings.Join(tags, ", ")))
	case "Refer-To", "Referred-By":
		// Parsed by sipgo into its own types, which roles may expect.
		out, err := sip.HeadersParser(sip.DefaultHeadersParser()).ParseHeader(nil, []byte(h.name+": "+h.value))
		if err != nil || len(out) != 1 {
			msg.AppendHeader(sip.NewHeader(h.name, h.value))
			return badField(h.name, "malformed address")
		}
		msg.AppendHeader(out[0])
	default:
		msg.AppendHeader(sip.NewHeader(h.name, h.value))
		if err := checkText(h.value); err != nil {
			return badField(h.name, err.Error())
		}
	}
	return nil
}

// sipURI builds the sipgo URI from the strict parse.
func sipURI(u uri) sip.Uri {
	if !u.isSIP {
		// Non-SIP schemes: sipgo keeps the scheme and the raw text. Its
		// parser refuses schemes with digits, "+", "-" or "." (valid per
		// RFC 2396, e.g. soap.beep, RFC 4475 §3.3.3); for those the
		// scheme-specific part goes into Host, which sipgo writes back
		// verbatim.
		var su sip.Uri
		if err := sip.ParseUri(u.text, &su); err != nil {
			_, rest, _ := strings.Cut(u.text, ":")
			su = sip.Uri{Scheme: u.scheme, Host: rest}
		}
		return su
	}
	su := sip.Uri{
		Scheme:   u.scheme,
		User:     u.user,
		Password: u.pass,
		Host:     u.host,
		Port:     u.port,
	}
	if len(u.params) > 0 {
		su.UriParams = sipParams(u.params)
	}
	if len(u.headers) > 0 {
		su.Headers = make(sip.HeaderParams, 0, len(u.headers))
		for _, h := range u.headers {
			su.Headers = append(su.Headers, sip.HeaderKV{K: h.name, V: h.value})
		}
	}
	return su
}

// sipParams converts parameters; see the package doc for quoted values.
func sipParams(ps []param) sip.HeaderParams {
	if len(ps) == 0 {
		return nil
	}
	out := make(sip.HeaderParams, 0, len(ps))
	for _, p := range ps {
		v := p.value
		if len(v) >= 2 && v[0] == '"' && strings.ContainsAny(v, " \t") {
			v = v[1 : len(v)-1]
		}
		out = append(out, sip.HeaderKV{K: p.name, V: v})
	}
	return out
}

func paramString(ps []param) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteByte(';')
		b.WriteString(p.name)
		if p.hasValue {
			b.WriteByte('=')
			b.WriteString(p.value)
		}
	}
	return b.String()
}

func sipVia(v via) *sip.ViaHeader {
	return &sip.ViaHeader{
		ProtocolName:    v.proto,
		ProtocolVersion: v.version,
		Transport:       v.transport,
		Host:            v.host,
		Port:            v.port,
		Params:          sipParams(v.params),
	}
}
