package wasmhost

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
)

// errStdoutFull is what a guest's write past the response cap returns; the
// guest sees EIO, and its instance is cancelled right after.
var errStdoutFull = errors.New("response exceeds max_response")

// stdoutBuffer collects a guest's stdout up to max bytes. The first write
// past max cancels the instance, so a guest that ignores write errors and
// keeps writing is stopped at its next function call or loop iteration
// rather than at the request deadline.
//
// A wasm instance runs on one goroutine and wazero calls Write from it, so
// the buffer needs no lock.
type stdoutBuffer struct {
	buf    *bytes.Buffer
	max    int64
	over   bool
	cancel context.CancelFunc
}

// Write implements io.Writer.
func (b *stdoutBuffer) Write(p []byte) (int, error) {
	if b.over {
		return 0, errStdoutFull
	}
	if int64(b.buf.Len())+int64(len(p)) > b.max {
		b.over = true
		b.cancel()
		return 0, errStdoutFull
	}
	return b.buf.Write(p)
}

// Bounds on what one request's stderr may put in the agent log: a guest
// that floods stderr must not flood the log.
const (
	maxStderrLine  = 1024 // bytes per logged line; the rest is cut
	maxStderrLines = 64   // lines per request; later ones are counted, not logged
)

// stderrLog writes a guest's stderr to the agent log, one record per line,
// with the app's attributes, within maxStderrLine and maxStderrLines.
// Like stdoutBuffer it is written from the instance's goroutine only.
type stderrLog struct {
	ctx     context.Context
	logger  *slog.Logger
	line    []byte
	cut     bool // the current line was longer than maxStderrLine
	lines   int
	dropped int // bytes not logged because of maxStderrLines
}

// Write implements io.Writer. It never fails: losing a log line must not
// fail the guest.
func (l *stderrLog) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if l.lines >= maxStderrLines {
			l.dropped += len(p)
			return n, nil
		}
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxStderrLine - len(l.line); len(chunk) > room {
			l.line = append(l.line, chunk[:room]...)
			l.cut = true
		} else {
			l.line = append(l.line, chunk...)
		}
		if i < 0 {
			return n, nil
		}
		l.emit()
		p = p[i+1:]
	}
	return n, nil
}

// emit logs the current line and starts the next.
func (l *stderrLog) emit() {
	l.lines++
	if l.cut {
		l.logger.LogAttrs(l.ctx, slog.LevelInfo, "guest stderr",
			slog.String("line", string(l.line)), slog.Bool("truncated", true))
	} else {
		l.logger.LogAttrs(l.ctx, slog.LevelInfo, "guest stderr", slog.String("line", string(l.line)))
	}
	l.line = l.line[:0]
	l.cut = false
}

// flush logs an unterminated last line and what the line cap dropped.
func (l *stderrLog) flush() {
	if len(l.line) > 0 || l.cut {
		if l.lines < maxStderrLines {
			l.emit()
		} else {
			l.dropped += len(l.line)
		}
	}
	if l.dropped > 0 {
		l.logger.LogAttrs(l.ctx, slog.LevelWarn, "guest stderr over line cap",
			slog.Int("max_lines", maxStderrLines), slog.Int("dropped_bytes", l.dropped))
	}
}

// bufPool recycles request bodies and stdout buffers between requests.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuf keeps a rare huge response from pinning its buffer forever.
const maxPooledBuf = 1 << 20

func getBuf() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuf(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuf {
		return
	}
	b.Reset()
	bufPool.Put(b)
}
