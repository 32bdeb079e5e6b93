/** Test helpers: real Postgres schemas, PGlite, and real `hangar` processes. */
export * from './db.ts';
export * from './llm.ts';
export * from './logger.ts';
export * from './processes.ts';
export * from './server.ts';
