package devices

import (
	"net"
	"sync"
)

// batchConn lets a connection's writer turn many frames into one write
// system call: between hold and flush, writes are collected in a buffer.
// Outside a hold (the Noise handshake) writes go straight through. Only the
// connection's writer goroutine holds and flushes, so the buffer needs no
// lock of its own beyond the hold flag's.
type batchConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  []byte
}

// maxBatch is the buffer size at which a held batch is flushed early.
const maxBatch = 256 << 10

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.held {
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	c.mu.Unlock()
	return len(p), nil
}

// hold starts collecting writes.
func (c *batchConn) hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// pending reports the bytes collected so far.
func (c *batchConn) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

// flush writes what was collected in one call and stops collecting.
func (c *batchConn) flush() error {
	c.mu.Lock()
	buf := c.buf
	c.held = false
	c.mu.Unlock()
	if len(buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(buf)
	c.mu.Lock()
	if cap(buf) <= maxBatch*2 {
		c.buf = buf[:0]
	} else {
		c.buf = nil
	}
	c.mu.Unlock()
	return err
}

// batchListener wraps every accepted connection in a batchConn.
type batchListener struct{ net.Listener }

func (l batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &batchConn{Conn: c}, nil
}
