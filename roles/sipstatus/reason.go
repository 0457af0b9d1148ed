package sipstatus

// ReasonPhrase returns the reason phrase registered for a status code
// (RFC 3261 §21 and the extensions that define their own codes), or a
// class-level phrase for unregistered codes of a known class (RFC 3261 §8.1.3.2
// treats an unknown code like the x00 code of its class).
func ReasonPhrase(code int) string {
	switch code {
	// 1xx: RFC 3261 §21.1, RFC 6228.
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 181:
		return "Call Is Being Forwarded"
	case 182:
		return "Queued"
	case 183:
		return "Session Progress"
	case 199:
		return "Early Dialog Terminated"
	// 2xx: RFC 3261 §21.2, RFC 3265, RFC 5839.
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 204:
		return "No Notification"
	// 3xx: RFC 3261 §21.3.
	case 300:
		return "Multiple Choices"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Moved Temporarily"
	case 305:
		return "Use Proxy"
	case 380:
		return "Alternative Service"
	// 4xx: RFC 3261 §21.4 and extensions.
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 402:
		return "Payment Required"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 410:
		return "Gone"
	case 412:
		return "Conditional Request Failed" // RFC 3903
	case 413:
		return "Request Entity Too Large"
	case 414:
		return "Request-URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Unsupported URI Scheme"
	case 420:
		return "Bad Extension"
	case 421:
		return "Extension Required"
	case 422:
		return "Session Interval Too Small" // RFC 4028
	case 423:
		return "Interval Too Brief"
	case 429:
		return "Provide Referrer Identity" // RFC 3892
	case 430:
		return "Flow Failed" // RFC 5626
	case 439:
		return "First Hop Lacks Outbound Support" // RFC 5626
	case 440:
		return "Max-Breadth Exceeded" // RFC 5393
	case 480:
		return "Temporarily Unavailable"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 482:
		return "Loop Detected"
	case 483:
		return "Too Many Hops"
	case 484:
		return "Address Incomplete"
	case 485:
		return "Ambiguous"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 489:
		return "Bad Event" // RFC 3265
	case 491:
		return "Request Pending"
	case 493:
		return "Undecipherable"
	case 494:
		return "Security Agreement Required" // RFC 3329
	// 5xx: RFC 3261 §21.5.
	case 500:
		return "Server Internal Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Server Time-out"
	case 505:
		return "Version Not Supported"
	case 513:
		return "Message Too Large"
	case 580:
		return "Precondition Failure" // RFC 3312
	// 6xx: RFC 3261 §21.6, RFC 8197, RFC 8688.
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	case 604:
		return "Does Not Exist Anywhere"
	case 606:
		return "Not Acceptable"
	case 607:
		return "Unwanted"
	case 608:
		return "Rejected"
	}
	if code >= 100 && code <= 699 && code%100 != 0 {
		return ReasonPhrase(code - code%100)
	}
	return ""
}
