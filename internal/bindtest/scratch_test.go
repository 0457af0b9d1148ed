package bindtest

import "testing"

func TestScratch(t *testing.T) {
	n := Start(t, Options{Zone: "example.test", IP: "127.0.30.53", Records: []string{"n1 IN A 1.2.3.4"}})
	t.Logf("%+v", n.Transfer(t))
	t.Logf("serial %d", n.Serial(t))
	t.Logf("%+v", n.Query(t, "n1.example.test", "A"))
	t.Log(n.Log())
}
