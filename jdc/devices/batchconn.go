package devices

import (
	"bufio"
	"net"
	"sync"
)

// batchConn cuts system calls on both directions of a connection. Writes:
// between hold and flush they are collected in a buffer, so the writer turns
// many frames into one write; outside a hold (the Noise handshake) they go
// straight through. Reads go through a small buffer, so a burst of frames
// (a proxy's shares) costs one read instead of two per frame. One goroutine
// reads and one writes.
type batchConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  []byte
	r    *bufio.Reader // nil: unbuffered reads
}

// readBuffer is the read buffer of a connection (per connection memory).
const readBuffer = 4096

func newBatchConn(c net.Conn) *batchConn {
	return &batchConn{Conn: c, r: bufio.NewReaderSize(c, readBuffer)}
}

func (c *batchConn) Read(p []byte) (int, error) {
	if c.r == nil {
		return c.Conn.Read(p)
	}
	return c.r.Read(p)
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
	return newBatchConn(c), nil
}
