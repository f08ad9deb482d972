package recordschema

import "testing"

func TestSchemaAcceptsAValidRecordAndRefusesBrokenOnes(t *testing.T) {
	good := `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","kind":"beacon","host":"h","ip":"127.0.0.1","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","cookie_state":"new","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":43,"params":{"a":"b"}}`
	if err := Validate([]byte(good)); err != nil {
		t.Fatal(err)
	}
	// page is a valid page record to which a case appends fields.
	const page = `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","kind":"page","host":"h","ip":"i","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0`
	withASNAndAnon := page + `,"asn":{"number":4134,"org":"Chinanet"},"anon":{"anonymous":true,"vpn":true,"hosting":true,"tor":true,"proxy":true,"residential_proxy":true}}`
	if err := Validate([]byte(withASNAndAnon)); err != nil {
		t.Fatal(err)
	}
	// mail is a record of a mail link, without its kind and the fields
	// that follow.
	const mail = `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","host":"h","ip":"i","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0`
	for _, rec := range []string{
		mail + `,"kind":"open","link":"ok","campaign":"c-1","member_id":"m-1","prefetch":"gmail_proxy"}`,
		mail + `,"kind":"click","link":"ok","campaign":"c-1","member_id":"m-1","destination":"https://www.b2s.com/a?b=c"}`,
		mail + `,"kind":"unsubscribe","link":"expired","consent":"child","campaign":"c-1","member_id":"m-1"}`,
		mail + `,"kind":"open","link":"invalid"}`,
	} {
		if err := Validate([]byte(rec)); err != nil {
			t.Fatalf("%s: %v", rec, err)
		}
	}
	bad := map[string]string{
		"member_id without cookie_id on a page": page + `,"member_id":"m-1"}`,
		"mail record without link":              mail + `,"kind":"open","campaign":"c-1"}`,
		"mail record with a cookie_id":          mail + `,"kind":"open","link":"ok","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","cookie_state":"new"}`,
		"open with a destination":               mail + `,"kind":"open","link":"ok","destination":"https://www.b2s.com/"}`,
		"page with a campaign":                  page + `,"campaign":"c-1"}`,
		"destination with a space":              mail + `,"kind":"click","link":"ok","destination":"https://a b"}`,
		"unknown prefetch":                      mail + `,"kind":"open","link":"ok","prefetch":"outlook"}`,
		"unknown link state":                    mail + `,"kind":"open","link":"forged"}`,
		"not JSON":                              `{"schema":1`,
		"unknown kind":                          `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","kind":"visit","host":"h","ip":"i","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0}`,
		"page with params":                      `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","kind":"page","host":"h","ip":"i","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0,"params":{}}`,
		"beacon without params":                 `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","kind":"beacon","host":"h","ip":"i","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0}`,
		"cookie id not hex":                     `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","kind":"page","host":"h","ip":"i","cookie_id":"xyz","cookie_state":"new","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0}`,
		"missing event_id":                      `{"schema":1,"ts":"2026-11-28T20:57:59.108030Z","kind":"page","host":"h","ip":"i","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0}`,
		"timestamp not UTC":                     `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030+08:00","kind":"page","host":"h","ip":"i","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0}`,
		"empty asn":                             page + `,"asn":{}}`,
		"asn number 0":                          page + `,"asn":{"number":0}}`,
		"asn number over 32 bits":               page + `,"asn":{"number":4294967296}}`,
		"unknown asn field":                     page + `,"asn":{"number":1,"name":"x"}}`,
		"empty anon":                            page + `,"anon":{}}`,
		"anon flag false":                       page + `,"anon":{"vpn":false}}`,
		"unknown anon flag":                     page + `,"anon":{"relay":true}}`,
	}
	for name, rec := range bad {
		t.Run(name, func(t *testing.T) {
			if err := Validate([]byte(rec)); err == nil {
				t.Fatalf("schema accepted %s", rec)
			}
		})
	}
}
