// The public API of nslb.dev/v1alpha1: types, schemas and validation. The only barrel file (STYLE).
export * from './types.js';
export * from './schema-vocabulary.js';
export * from './schemas.js';
export * from './validate.js';
