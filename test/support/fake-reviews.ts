// TokenReview and SubjectAccessReview for the in-test API server: create-only, never stored, answered from
// tokens and grants the test declares, with the shapes and rules of the real ones:
// - TokenReview (authentication.k8s.io/v1): status.authenticated and status.user for a known token, and
//   authenticated false with an error for any other; spec.token is required (422);
// - SubjectAccessReview (authorization.k8s.io/v1): status.allowed when a grant for the user or one of its
//   groups matches the verb and non-resource path (`*` and a trailing `/*` as RBAC's nonResourceURLs), or the
//   resource attributes; exactly one of the two attribute kinds (422 otherwise); spec.user or spec.groups
//   required.
export type JsonObject = Record<string, unknown>;

export interface FakeUser {
  username: string;
  uid?: string;
  groups?: string[];
}

export interface FakeGrant {
  /** A user name, or `group:NAME`. */
  subject: string;
  verbs: string[];
  /** Non-resource URLs (RBAC nonResourceURLs), e.g. ['/metrics']. */
  nonResourceURLs?: string[];
  /** Resource rules: `group/resource` ('' group for core), e.g. ['/secrets']. */
  resources?: string[];
}

class ReviewError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

export class FakeReviews {
  readonly #tokens = new Map<string, FakeUser>();
  readonly #grants: FakeGrant[] = [];
  /** Reviews answered, by kind: tests see whether a cache spared the API server. */
  readonly counts = { tokenReviews: 0, subjectAccessReviews: 0 };

  addToken(token: string, user: FakeUser): void {
    this.#tokens.set(token, user);
  }

  allow(grant: FakeGrant): void {
    this.#grants.push(grant);
  }

  /** The answer to a POST of `plural` in `group/version`, or undefined when it is not a review. */
  answer(method: string, group: string, version: string, plural: string, raw: string): { code: number; body: JsonObject } | undefined {
    const tokenReview = group === 'authentication.k8s.io' && version === 'v1' && plural === 'tokenreviews';
    const accessReview = group === 'authorization.k8s.io' && version === 'v1' && plural === 'subjectaccessreviews';
    if (!tokenReview && !accessReview) return undefined;
    const kind = tokenReview ? 'TokenReview' : 'SubjectAccessReview';
    try {
      if (method !== 'POST') throw new ReviewError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        throw new ReviewError(400, 'BadRequest', 'the request body is not JSON');
      }
      const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
      const status = tokenReview ? this.#tokenReview(spec) : this.#accessReview(spec);
      return { code: 201, body: { kind, apiVersion: `${group}/${version}`, metadata: { creationTimestamp: null }, spec, status } };
    } catch (err) {
      if (!(err instanceof ReviewError)) throw err;
      return {
        code: err.code,
        body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: err.message, reason: err.reason, code: err.code },
      };
    }
  }

  #tokenReview(spec: JsonObject): JsonObject {
    this.counts.tokenReviews++;
    if (typeof spec.token !== 'string' || spec.token === '')
      throw new ReviewError(422, 'Invalid', 'TokenReview.authentication.k8s.io is invalid: spec.token: Required value');
    const user = this.#tokens.get(spec.token);
    if (user === undefined) return { authenticated: false, user: {}, error: 'invalid bearer token' };
    return {
      authenticated: true,
      user: { username: user.username, ...(user.uid === undefined ? {} : { uid: user.uid }), groups: [...(user.groups ?? []), 'system:authenticated'] },
    };
  }

  #accessReview(spec: JsonObject): JsonObject {
    this.counts.subjectAccessReviews++;
    const nonResource = isObject(spec.nonResourceAttributes) ? spec.nonResourceAttributes : undefined;
    const resource = isObject(spec.resourceAttributes) ? spec.resourceAttributes : undefined;
    if ((nonResource === undefined) === (resource === undefined)) {
      throw new ReviewError(
        422,
        'Invalid',
        'SubjectAccessReview.authorization.k8s.io is invalid: spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified',
      );
    }
    const user = typeof spec.user === 'string' ? spec.user : '';
    const groups = Array.isArray(spec.groups) ? spec.groups.filter((g): g is string => typeof g === 'string') : [];
    if (user === '' && groups.length === 0) {
      throw new ReviewError(
        422,
        'Invalid',
        'SubjectAccessReview.authorization.k8s.io is invalid: spec.user: Invalid value: "": at least one of user or group must be specified',
      );
    }
    const subjects = new Set([user, ...groups.map((g) => `group:${g}`)]);
    const verb = String((nonResource ?? resource)?.verb ?? '');
    const allowed = this.#grants.some((g) => {
      if (!subjects.has(g.subject) || !(g.verbs.includes(verb) || g.verbs.includes('*'))) return false;
      if (nonResource !== undefined) {
        const path = String(nonResource.path ?? '');
        return (g.nonResourceURLs ?? []).some((u) => u === '*' || u === path || (u.endsWith('/*') && path.startsWith(u.slice(0, -1))));
      }
      const wanted = `${String(resource?.group ?? '')}/${String(resource?.resource ?? '')}`;
      return (g.resources ?? []).includes(wanted);
    });
    return allowed ? { allowed: true, reason: 'allowed by a test grant' } : { allowed: false };
  }
}
