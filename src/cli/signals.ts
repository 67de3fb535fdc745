// The agent's signals. Handlers are installed first and never removed: a SIGTERM or SIGINT that arrives while the
// agent starts, or a second one while it stops, ends it at once (as the default action would); the first one after
// start-up stops it gracefully, leaving load balancers serving. SIGHUP re-reads --config (systemctl reload); Node's
// default for SIGHUP is to exit: never let it.
export class AgentSignals {
  #stopping = false;
  #onStop: ((signal: NodeJS.Signals) => void) | undefined;
  #onReload: (() => Promise<void>) | undefined;
  #reloadPending = false;
  #reloading: Promise<void> = Promise.resolve();

  constructor() {
    const onSignal = (signal: NodeJS.Signals): void => {
      // Still starting (nothing to stop gracefully yet), or a second signal: go now.
      if (this.#onStop === undefined || this.#stopping) process.exit(signal === 'SIGINT' ? 130 : 143);
      this.#stopping = true;
      this.#onStop(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', () => this.#hup());
  }

  #hup(): void {
    const reload = this.#onReload;
    if (reload === undefined) {
      this.#reloadPending = true;
      return;
    }
    this.#reloading = this.#reloading.then(reload);
  }

  /** From now on each SIGHUP runs `reload`, one after the other; one that came while starting runs now. */
  handleReloads(reload: () => Promise<void>): void {
    this.#onReload = reload;
    if (this.#reloadPending) this.#hup();
  }

  /** Resolves with the first SIGTERM or SIGINT from now on: the agent is to stop gracefully. */
  stopRequested(): Promise<NodeJS.Signals> {
    return new Promise((resolve) => {
      this.#onStop = resolve;
    });
  }

  /** No more reloads; resolves when the one running (if any) is done. */
  async endReloads(): Promise<void> {
    this.#onReload = async () => {};
    await this.#reloading;
  }
}
