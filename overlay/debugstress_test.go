package overlay

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestDebugStreamStress(t *testing.T) {
	ca := newTestCA(t, "example.test")
	var la, lb logBuf
	a := newTestTransport(t, ca.material("a", "dc1"), 0, &la)
	b := newTestTransport(t, ca.material("b", "dc1"), 0, &lb)
	go func() {
		for c := range b.StreamCh() {
			go func(c io.ReadWriteCloser) {
				defer c.Close()
				buf := make([]byte, 70000)
				if _, err := io.ReadFull(c, buf); err != nil {
					t.Errorf("server read: %v", err)
					return
				}
				c.Write(buf)
			}(c)
		}
	}()
	var wg sync.WaitGroup
	for g := 0; g < 40; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				c, err := a.DialAddressTimeout(memberlist.Address{Addr: b.advAddr, Name: "b"}, 10*time.Second)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				msg := bytes.Repeat([]byte{byte(i)}, 70000)
				c.Write(msg)
				got := make([]byte, 70000)
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
					t.Errorf("client read: %v", err)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
}
