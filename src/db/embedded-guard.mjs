// Stops the embedded PostgreSQL server when the platform process that started
// it goes away without stopping it: our stdin is a pipe from that process, and
// it closes however the process ends. Plain JavaScript so it starts in ~40 ms.
const pid = Number(process.argv[2]);
process.stdin.resume();
process.stdin.on('close', () => {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    // already gone
  }
  process.exit(0);
});
