// Progress of a long load step (reading the weights; uploading them to a GPU): a bar redrawn in place on a
// TTY, at most ten times a second, else a log line at each quarter, so that a piped or collected log
// (Kubernetes) stays short.
export interface ProgressSink {
  /** The stream the bar is drawn on (a TTY: in place; otherwise lines go through `log`). */
  stream: { isTTY?: boolean; columns?: number; write(s: string): unknown };
  log: (msg: string) => void;
  /** Time source in ms (tests pass a fake clock). */
  now?: () => number;
}

export interface Progress {
  update(done: number): void;
  finish(): void;
}

const BAR = 30;

export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

export function createProgress(label: string, total: number, sink: ProgressSink): Progress {
  const now = sink.now ?? (() => performance.now());
  const t0 = now();
  const tty = sink.stream.isTTY === true;
  let lastDraw = -Infinity;
  let nextQuarter = 1;
  let done = 0;
  let finished = false;

  const rate = () => {
    const s = (now() - t0) / 1000;
    return s > 0 ? `${formatBytes(done / s)}/s` : '';
  };
  const line = () => {
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const fill = Math.round(frac * BAR);
    return `${label} [${'#'.repeat(fill)}${'.'.repeat(BAR - fill)}] ${String(Math.floor(frac * 100)).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)} ${rate()}`;
  };

  return {
    update(n: number) {
      if (finished) return;
      done = n;
      if (tty) {
        const t = now();
        if (t - lastDraw < 100 && done < total) return;
        lastDraw = t;
        sink.stream.write(`\r\x1b[2K${line()}`);
        return;
      }
      while (total > 0 && nextQuarter < 4 && done >= (total * nextQuarter) / 4) {
        sink.log(`${label}: ${nextQuarter * 25}% (${formatBytes(done)}/${formatBytes(total)})`);
        nextQuarter++;
      }
    },
    finish() {
      if (finished) return;
      finished = true;
      const secs = ((now() - t0) / 1000).toFixed(2);
      if (tty) sink.stream.write(`\r\x1b[2K${line()}\n`);
      sink.log(`${label}: done, ${formatBytes(done)} in ${secs} s`);
    },
  };
}
