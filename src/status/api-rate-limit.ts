// The client-side limit on what the agent writes to the Kubernetes API (status and Events), with client-go's
// meaning of `--kube-api-qps` and `--kube-api-burst`: a token bucket that holds `burst` tokens, starts full and
// refills at `qps` per second; every request takes one. Tokens are handed out in the order they were asked for.
import { TokenBucket } from 'limiter';

export interface RateLimit {
  /** Requests per second, sustained (may be fractional, as client-go's float32 QPS). */
  qps: number;
  /** Requests that may go at once after a quiet period. */
  burst: number;
}

/** What the writers need of a limiter (tests give their own). */
export interface RequestLimiter {
  readonly limit: RateLimit;
  /** Resolves when the caller may send one request. */
  take(): Promise<void>;
  /** The share of the burst available now (0–1); a limiter without one is taken as always full. */
  spare?(): number;
}

export function checkRateLimit(limit: RateLimit): void {
  if (!(Number.isFinite(limit.qps) && limit.qps > 0)) throw new Error(`--kube-api-qps must be a positive number (got ${limit.qps})`);
  if (!(Number.isInteger(limit.burst) && limit.burst >= 1)) throw new Error(`--kube-api-burst must be a positive integer (got ${limit.burst})`);
}

export class ApiRateLimiter implements RequestLimiter {
  #bucket: TokenBucket;
  #limit: RateLimit;

  constructor(limit: RateLimit) {
    checkRateLimit(limit);
    this.#limit = { ...limit };
    this.#bucket = ApiRateLimiter.#full(limit);
  }

  static #full(limit: RateLimit): TokenBucket {
    const bucket = new TokenBucket({ bucketSize: limit.burst, tokensPerInterval: limit.qps, interval: 'second' });
    // limiter's buckets start empty; client-go's (golang.org/x/time/rate) start full: the first `burst`
    // requests go at once.
    bucket.content = limit.burst;
    return bucket;
  }

  get limit(): RateLimit {
    return { ...this.#limit };
  }

  /** Resolves when the caller may send one request. */
  async take(): Promise<void> {
    await this.#bucket.removeTokens(1);
  }

  spare(): number {
    this.#bucket.drip();
    return this.#bucket.content / this.#limit.burst;
  }

  /**
   * New QPS and burst (SIGHUP). The tokens left carry over, up to the new burst; callers already waiting keep
   * waiting on the old bucket until their turn (at most one old refill period).
   */
  set(limit: RateLimit): void {
    checkRateLimit(limit);
    const left = Math.min(this.#bucket.content, limit.burst);
    this.#limit = { ...limit };
    this.#bucket = new TokenBucket({ bucketSize: limit.burst, tokensPerInterval: limit.qps, interval: 'second' });
    this.#bucket.content = left;
  }
}
