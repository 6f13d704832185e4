package storage

// Group commit.
//
// Every write goes through one goroutine, the writer, which owns the only
// connection that writes. A write is a job: a function run inside a
// transaction. The writer takes the job that woke it and every other job
// already waiting (up to maxBatch), runs them one after the other in ONE
// transaction, each inside its own SAVEPOINT, and commits once. Only when
// that commit has returned (synchronous=FULL: the WAL is on disk) does it
// answer the jobs. So:
//
//   - a "250" still means "on disk": Enqueue returns after the commit that
//     holds the message;
//   - fifty sessions that end their DATA together cost one fsync, not
//     fifty, and never fight over SQLite's write lock (the lock waits that
//     ran out as SQLITE_BUSY under load are gone: within the process there
//     is one writer; another process, such as `postroom queue`, still waits
//     on busy_timeout);
//   - a job that fails rolls back to its savepoint and gets its own error;
//     the others in the batch are committed. Only a failure of the
//     transaction itself (the commit, a full disk that made SQLite roll the
//     whole transaction back) is reported to every job that was in it.
//
// Under load, a transaction also waits a moment for the writes it knows
// are coming: intake announces each session from MAIL FROM to the end of
// its DATA (Expect), and a writer that starts a transaction while some
// are announced waits up to commitWindow for them (gather). Each commit
// writes the pages its messages share (the table and index pages they
// fall on, the counters) once, and syncs once; twenty sessions thus cost a
// few commits rather than a dozen. A lone client is never kept waiting:
// nothing else is announced when its message is.
//
// A job's statements run under the writer's context, never the caller's:
// SQLite's interrupt (how the driver cancels a statement) rolls back the
// whole transaction, and one impatient caller must not undo the others'
// work. A caller whose context ends while its job still waits in line gets
// the context's error and the job is dropped; once the job has started, the
// caller waits for its outcome, so that it never reports a failure for
// something that was in fact stored (and never closes a body the writer is
// still reading).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxBatch bounds how many jobs one transaction takes, so that a burst
// cannot hold the first job's answer back for long.
const maxBatch = 128

// commitWindow is the longest a transaction waits for announced writes.
// It bounds what a client whose message is stored together with others'
// waits longer for its 250; a client slow to finish its DATA does not
// hold the others up for more than this.
const commitWindow = 2 * time.Millisecond

// ErrClosed is returned for a write asked of a closed store.
var ErrClosed = errors.New("the store is closed")

// wtx is a job's view of the batch transaction.
type wtx struct {
	*sql.Tx
	ctx context.Context // the writer's: statements must not be interrupted by a caller
	w   *writer

	// Counter additions (bump): the running job's, and those of the jobs
	// that succeeded, written by flushCounts before the commit. A job that
	// fails takes its additions with it, as the savepoint does its rows.
	jobCounts, counts map[counterKey]int
}

// jobDone keeps the running job's counter additions, or drops them.
func (t *wtx) jobDone(ok bool) {
	if ok && len(t.jobCounts) > 0 {
		if t.counts == nil {
			t.counts = make(map[counterKey]int)
		}
		for k, n := range t.jobCounts {
			t.counts[k] += n
		}
	}
	clear(t.jobCounts)
}

// flushCounts writes the transaction's counter additions.
func (t *wtx) flushCounts() error {
	for k, n := range t.counts {
		if _, err := t.exec(`INSERT INTO counters(name, bucket, n) VALUES (?, ?, ?)
			ON CONFLICT(name, bucket) DO UPDATE SET n = n + excluded.n`, k.name, k.bucket, n); err != nil {
			return fmt.Errorf("updating the counters: %w", err)
		}
	}
	return nil
}

// stmt returns query bound to this transaction, prepared once on the
// writer's connection. The hot paths run the same few statements for every
// message; parsing them each time was a tenth of intake's CPU.
func (t *wtx) stmt(query string) (*sql.Stmt, error) {
	if st := t.w.stmts[query]; st != nil {
		return t.Tx.StmtContext(t.ctx, st), nil
	}
	// The writer's one connection is this transaction's, so a statement
	// for keeps can only be prepared once it is free again (prepareWanted).
	t.w.want[query] = true
	return t.Tx.PrepareContext(t.ctx, query)
}

// exec runs a cached statement.
func (t *wtx) exec(query string, args ...any) (sql.Result, error) {
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(t.ctx, args...)
}

// Job states: a job is dropped only while it waits.
const (
	jobWaiting int32 = iota
	jobTaken
	jobDropped
)

type job struct {
	fn func(*wtx) error
	// rerun, when set, readies fn to run again from the start in a new
	// transaction, after the one it ran in was rolled back: it resets
	// what fn changed outside the database (a result, a body's position).
	// See commitTogether.
	rerun func()
	state atomic.Int32
	done  chan error // buffered: the writer never blocks on an answer
}

// writer is the single writing goroutine and its connection.
type writer struct {
	db      *sql.DB // one connection: SetMaxOpenConns(1)
	jobs    chan *job
	quit    chan struct{} // closed by close
	stopped chan struct{} // closed when the loop has returned
	once    sync.Once

	// Prepared statements; only the writer goroutine uses them.
	stmts map[string]*sql.Stmt
	want  map[string]bool // asked for by the last transaction, not prepared yet

	buf []byte // the body chunk buffer; only the writer goroutine uses it

	// coming counts the writes announced (Expect) and not yet asked;
	// settled is poked when it drops to zero, so that gather stops
	// waiting at once.
	coming  atomic.Int64
	settled chan struct{}
	window  time.Duration // commitWindow; longer in tests

	// checkpoint is poked after each commit (checkpoint.go).
	checkpoint chan struct{}
	commits    atomic.Int64 // transactions committed, for tests
}

func newWriter(db *sql.DB) *writer {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	w := &writer{
		db:      db,
		jobs:    make(chan *job, maxBatch),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
		stmts:   make(map[string]*sql.Stmt),
		want:    make(map[string]bool),

		checkpoint: make(chan struct{}, 1),
		settled:    make(chan struct{}, 1),
		window:     commitWindow,
	}
	go w.loop()
	return w
}

// prepareWanted prepares, for the next transactions, the statements the
// last one asked for. It runs between transactions, when the connection
// is free.
func (w *writer) prepareWanted() {
	for query := range w.want {
		if st, err := w.db.PrepareContext(context.Background(), query); err == nil {
			w.stmts[query] = st
		}
		delete(w.want, query)
	}
}

// chunkBuf is the writer's reusable buffer for one body chunk: a message
// costs no chunk-sized allocation.
func (w *writer) chunkBuf() []byte {
	if w.buf == nil {
		w.buf = make([]byte, chunkSize)
	}
	return w.buf
}

// do runs fn in the next batch transaction and returns once that
// transaction is committed (or fn's own error, or the batch's).
func (w *writer) do(ctx context.Context, fn func(*wtx) error) error {
	return w.doAnnounced(ctx, fn, nil, nil)
}

// doRerunnable is do for a job that can run again (job.rerun).
func (w *writer) doRerunnable(ctx context.Context, fn func(*wtx) error, rerun func()) error {
	return w.doAnnounced(ctx, fn, rerun, nil)
}

// doAnnounced is do for a write announced with expect: announced (when
// not nil) withdraws the announcement once the job is in line, where a
// transaction gathering announced writes finds it, or once it is clear
// that it never will be. rerun is job.rerun, or nil.
func (w *writer) doAnnounced(ctx context.Context, fn func(*wtx) error, rerun, announced func()) error {
	if announced != nil {
		defer announced()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	j := &job{fn: fn, rerun: rerun, done: make(chan error, 1)}
	select {
	case w.jobs <- j:
		if announced != nil {
			announced()
		}
	case <-w.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobWaiting, jobDropped) {
			return ctx.Err()
		}
		// Started: its outcome is on its way.
		select {
		case err := <-j.done:
			return err
		case <-w.stopped:
			return w.lastWord(j)
		}
	case <-w.stopped:
		return w.lastWord(j)
	}
}

// lastWord is a job's answer once the writer has stopped: the answer it
// gave before stopping, or ErrClosed for a job it never took.
func (w *writer) lastWord(j *job) error {
	select {
	case err := <-j.done:
		return err
	default:
		return ErrClosed
	}
}

func (w *writer) loop() {
	defer close(w.stopped)
	batch := make([]*job, 0, maxBatch)
	for {
		select {
		case <-w.quit:
			w.failWaiting()
			return
		case j := <-w.jobs:
			batch = append(batch[:0], j)
		}
		batch = w.gather(w.drain(batch))
		w.run(batch)
		clear(batch) // let the jobs' closures go
	}
}

// gather adds to batch the announced writes that are asked within
// commitWindow, stopping as soon as none is announced any more.
func (w *writer) gather(batch []*job) []*job {
	if w.coming.Load() <= 0 || len(batch) >= maxBatch {
		return batch
	}
	t := time.NewTimer(w.window)
	defer t.Stop()
wait:
	for len(batch) < maxBatch && w.coming.Load() > 0 {
		select {
		case j := <-w.jobs:
			batch = append(batch, j)
		case <-w.settled:
		case <-t.C:
			break wait
		case <-w.quit:
			return batch
		}
	}
	// An announced write is in line before its announcement is
	// withdrawn (doAnnounced): take what is there.
	return w.drain(batch)
}

// drain adds to batch the jobs already waiting, without waiting.
func (w *writer) drain(batch []*job) []*job {
	for len(batch) < maxBatch {
		select {
		case j := <-w.jobs:
			batch = append(batch, j)
		default:
			return batch
		}
	}
	return batch
}

// expect announces (n = 1) or withdraws (n = -1) a write about to be
// asked.
func (w *writer) expect(n int64) {
	if w.coming.Add(n) <= 0 {
		select {
		case w.settled <- struct{}{}:
		default:
		}
	}
}

// failWaiting answers the jobs still in line when the store closes.
func (w *writer) failWaiting() {
	for {
		select {
		case j := <-w.jobs:
			if j.state.CompareAndSwap(jobWaiting, jobTaken) {
				j.done <- ErrClosed
			}
		default:
			return
		}
	}
}

// run takes the batch's jobs that are still wanted and commits them,
// in as few transactions as it can.
func (w *writer) run(batch []*job) {
	todo := batch[:0:0]
	for _, j := range batch {
		if j.state.CompareAndSwap(jobWaiting, jobTaken) {
			todo = append(todo, j)
		}
	}
	for len(todo) > 0 {
		todo = w.commit(todo)
	}
	if len(w.want) > 0 {
		w.prepareWanted()
	}
}

// commit runs jobs in one transaction and answers them. When the
// transaction is lost part way (SQLite rolled it back), the jobs it had run
// are answered with that error and the ones it had not reached are
// returned, to go in a fresh transaction.
func (w *writer) commit(jobs []*job) (rest []*job) {
	if len(jobs) > 1 && rerunnable(jobs) {
		if w.commitTogether(jobs) {
			return nil
		}
		for _, j := range jobs {
			j.rerun()
		}
	}
	ctx := context.Background()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		answer(jobs, classify(err))
		return nil
	}
	t := &wtx{Tx: tx, ctx: ctx, w: w}
	single := len(jobs) == 1
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		err, lost := runJob(t, j, single)
		errs[i] = err
		if lost != nil {
			tx.Rollback()
			lost = classify(lost)
			for k := range jobs[:i] {
				if errs[k] == nil {
					errs[k] = fmt.Errorf("the write was rolled back with the transaction it shared: %w", lost)
				}
			}
			if errs[i] == nil {
				errs[i] = lost
			}
			answerEach(jobs[:i+1], errs)
			return jobs[i+1:]
		}
	}
	if err := t.flushCounts(); err != nil {
		tx.Rollback()
		lost := classify(err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("the write was rolled back with the transaction it shared: %w", lost)
			}
		}
		answerEach(jobs, errs)
		return nil
	}
	if err := tx.Commit(); err != nil {
		answer(jobs, classify(err))
		return nil
	}
	w.committed()
	answerEach(jobs, errs)
	return nil
}

func rerunnable(jobs []*job) bool {
	for _, j := range jobs {
		if j.rerun == nil {
			return false
		}
	}
	return true
}

// commitTogether runs jobs that can all run again (job.rerun) in one
// transaction without a savepoint each: a savepoint costs two statements
// and a copy of every page its job first touches, about 4 % of a relayed
// message's CPU, and jobs almost never fail. It reports true once the
// jobs are answered: committed, or all failed with the commit. When a job
// fails, or the transaction is lost before the commit, it rolls back and
// reports false with no job answered; commit then runs them again, each
// in its savepoint, so that only the failing one fails.
func (w *writer) commitTogether(jobs []*job) bool {
	ctx := context.Background()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return false
	}
	t := &wtx{Tx: tx, ctx: ctx, w: w}
	for _, j := range jobs {
		err := call(t, j)
		t.jobDone(err == nil)
		if err != nil {
			tx.Rollback()
			return false
		}
	}
	if err := t.flushCounts(); err != nil {
		tx.Rollback()
		return false
	}
	if err := tx.Commit(); err != nil {
		answer(jobs, classify(err))
		return true
	}
	w.committed()
	answer(jobs, nil)
	return true
}

// runJob runs one job inside its savepoint. err is the job's own failure
// (its work undone); lost is set when the transaction itself is gone.
// A job alone in its transaction needs no savepoint: its failure rolls
// back the transaction.
func runJob(t *wtx, j *job, single bool) (err, lost error) {
	defer func() { t.jobDone(err == nil && lost == nil) }()
	if single {
		if err := call(t, j); err != nil {
			return classify(err), err
		}
		return nil, nil
	}
	if _, err := t.exec("SAVEPOINT job"); err != nil {
		return nil, err
	}
	if err = call(t, j); err != nil {
		// ROLLBACK TO fails when SQLite has already rolled the whole
		// transaction back (a full disk, an I/O error, an interrupt).
		if _, rerr := t.exec("ROLLBACK TO job"); rerr != nil {
			return classify(err), err
		}
		err = classify(err)
	}
	if _, rerr := t.exec("RELEASE job"); rerr != nil {
		return err, rerr
	}
	return err, nil
}

// call runs a job's function; a panic becomes that job's error, and its
// half-done work is rolled back like any failed job's.
func call(t *wtx, j *job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("storage: a write panicked: %v", p)
		}
	}()
	return j.fn(t)
}

func answer(jobs []*job, err error) {
	for _, j := range jobs {
		j.done <- err
	}
}

func answerEach(jobs []*job, errs []error) {
	for i, j := range jobs {
		j.done <- errs[i]
	}
}

// committed tells the checkpointer that the WAL has grown.
func (w *writer) committed() {
	w.commits.Add(1)
	select {
	case w.checkpoint <- struct{}{}:
	default:
	}
}

// close stops the writer once its current batch is committed; jobs still
// in line get ErrClosed.
func (w *writer) close() error {
	w.once.Do(func() { close(w.quit) })
	<-w.stopped
	for _, st := range w.stmts {
		st.Close()
	}
	return w.db.Close()
}
