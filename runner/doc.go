// Package runner owns where task handlers run: the Handler API that programs register
// their code with, the built-in handlers, the exec sandbox, and the Pool of worker
// slots that runs attempts and hands each outcome back to the caller as an input.
//
// It decides nothing about tasks: not whether an attempt is retried, nor when it
// times out, nor what a task's state becomes. The engine decides; the node's event
// loop starts and stops runs on the Pool as the engine says, and feeds every Done back
// to the engine.
//
// # Handlers
//
// A Registry maps task types to handlers and to the validators that check a payload
// at submission. NewRegistry has the built-ins noop, echo, sleep and sum; exec is
// added only when the operator enables it:
//
//	reg := runner.NewRegistry()
//	reg.Register("resize", func(ctx context.Context, in *runner.Input) (any, error) {
//		var p struct{ URL string `json:"url"` }
//		if err := in.Decode(&p); err != nil {
//			return nil, err
//		}
//		return resize(ctx, p.URL) // ctx ends on cancel, timeout or shutdown
//	})
//	if allowExec {
//		x, err := runner.NewExec(execAllow, 1<<20)
//		if err != nil {
//			return err
//		}
//		reg.Register("exec", x.Run)
//		reg.SetValidator("exec", x.Check)
//	}
//
// Reads of a Registry take no lock, so every submission can call reg.Validate and
// every run look its handler up while a program registers more.
//
// # Driving a Pool
//
// A Pool has Config.Slots workers. The caller starts at most that many runs at a time
// and learns of each end through Config.Done, called once per run on the worker's
// goroutine; Done sends to the event loop's inbox, selecting on shutdown too. Stop
// cancels one run with a cause, which the run's error then names; the pool applies no
// timeouts of its own: the engine keeps the deadline and stops the run with a
// TimeoutError when it passes.
//
//	pool, err := runner.NewPool(runner.Config{
//		Slots: 4, MaxResultBytes: 1 << 20, Registry: reg, Logger: log,
//		Done: func(d runner.Done) {
//			select {
//			case inbox <- d:
//			case <-stopping:
//			}
//		},
//		Go: ledger.Go, // counts the workers; refuses once shutdown began
//	})
//	for {
//		select {
//		case in := <-inbox: // a runner.Done among the other inputs
//			rd := eng.Step(clock.Now(), in)
//			// ... write, send ...
//			for _, s := range rd.Start {
//				pool.Start(runner.Run{ID: s.ID, Attempt: s.Attempt, Epoch: s.Epoch,
//					Type: s.Type, Payload: s.Payload, Deps: s.Deps})
//			}
//			for _, s := range rd.Stop { // a cancel, or a deadline that passed
//				pool.Stop(s.ID, s.Epoch, s.Cause) // runner.ErrCancelled, runner.TimeoutError{D: s.Timeout}
//			}
//			eng.Advance(rd)
//		case <-stopping:
//			return
//		}
//	}
//
// A Done names its run by ID, Attempt and Epoch; the engine drops one whose epoch it
// has moved past. Done.Err is the error as a user reads it, and Done.Stopped marks a
// run cut short because the node stops, which is not the task's failure.
//
// Shutdown closes the pool, lets the runs finish for a grace period, then cancels
// what is left and waits for the workers:
//
//	pool.Close()                  // no new runs; queued ones still run
//	waitIdle(graceCtx)            // until pool.Running() == 0, or the grace ends
//	pool.StopAll(runner.ErrStopped)
//	pool.Wait(ctx)                // a handler that ignores its context holds only ctx
//
// # Handler contract
//
// A handler gets its own copy of the payload and the deps' results, and a context
// carrying the task's id and attempt (TaskID, Attempt). When the context ends,
// context.Cause says why: ErrCancelled, a TimeoutError (ctx.Err() is then
// context.DeadlineExceeded) or ErrStopped. Whatever the handler returns then, the
// run's error is the cause, followed by the handler's own error when that says more.
// A panic fails only its attempt ("panic: <value>", logged with the stack), and so
// does a result that is not JSON or is larger than Config.MaxResultBytes.
package runner
