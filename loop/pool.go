package loop

import "sync"

// pool is a fixed set of goroutines with a bounded queue. submit never
// blocks: it reports false when the queue is full.
type pool struct {
	jobs chan func()
	wg   sync.WaitGroup
}

func newPool(workers, queue int) *pool {
	p := &pool{jobs: make(chan func(), queue)}
	p.wg.Add(workers)
	for range workers {
		go func() {
			defer p.wg.Done()
			for job := range p.jobs {
				job()
			}
		}()
	}
	return p
}

// submit queues job; goroutine-safe.
func (p *pool) submit(job func()) bool {
	select {
	case p.jobs <- job:
		return true
	default:
		return false
	}
}

func (p *pool) close() {
	close(p.jobs)
	p.wg.Wait()
}
