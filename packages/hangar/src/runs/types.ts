import type { RunErrorRecord } from '../errors.ts';
import type { StepRecord } from '../steps/repository.ts';
import type { CancelRequest } from './cancel.ts';
import type { MultitaskStrategy, RunStatus } from './status.ts';

/** A run as the API shows it (the LangGraph `Run` shape plus Hangar's fields). */
export interface Run {
  run_id: string;
  thread_id: string;
  assistant_id: string;
  tenant_id: string;
  agent: string;
  status: RunStatus;
  input: unknown;
  output: unknown;
  error: RunErrorRecord | null;
  config: Record<string, unknown>;
  metadata: Record<string, unknown>;
  kwargs: Record<string, unknown>;
  multitask_strategy: MultitaskStrategy;
  attempt: number;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
}

/** What a worker holds while it executes a run. Every write it makes is fenced by `epoch`. */
export interface Lease {
  runId: string;
  threadId: string;
  tenantId: string;
  owner: string;
  epoch: number;
}

export interface ClaimedRun {
  run: Run;
  lease: Lease;
  /** Thread state the run started from (the replay base). */
  baseValues: Record<string, unknown>;
  /** The run's recorded steps, in order (read by the claim itself). */
  history: StepRecord[];
  /** Set when the run was asked to cancel before this claim: the worker ends it without running it. */
  cancel: CancelRequest | null;
}
