export * from './errors.js';
export * from './examples.js';
export * from './ids.js';
export * from './influx.js';
export * from './messages.js';
export * from './topic-map.js';
export * from './topics.js';
