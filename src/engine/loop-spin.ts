// Keeps the JS thread's event loop polling (a chain of setImmediate turns: libuv then polls for I/O with a zero
// timeout instead of sleeping in epoll) for a while after engine activity, on device backends. A thread that
// sleeps through a request's forward pays the wake-up of its core (tens to hundreds of µs on a VM, more from
// a deep idle state) when the result is posted, and again when the client's next request arrives; the
// engine thread polls for the same reason (EngineCore::run's idle spin). Costs one core's time while
// requests come and go, nothing when idle. SGL_LOOP_SPIN=0 turns it off.

export class LoopSpin {
  private deadline = 0;
  private spinning = false;

  /** holdMs: how long the loop keeps polling after the last touch(). */
  constructor(private readonly holdMs: number) {}

  /** Whether the loop is being kept polling now. */
  get active(): boolean {
    return this.spinning;
  }

  /** Engine activity (a submission, a step's events): poll until holdMs after now. */
  touch(): void {
    this.deadline = performance.now() + this.holdMs;
    if (this.spinning) return;
    this.spinning = true;
    setImmediate(this.turn);
  }

  private readonly turn = (): void => {
    if (performance.now() < this.deadline) setImmediate(this.turn);
    else this.spinning = false;
  };
}

/** The spin of a ServingEngine on `backend`, or null (the CPU backend's cores are the forward's; the switch). */
export function loopSpinFor(backend: string): LoopSpin | null {
  const env = process.env.SGL_LOOP_SPIN;
  if (env === '0' || (backend === 'cpu' && env !== '1')) return null;
  return new LoopSpin(5);
}
