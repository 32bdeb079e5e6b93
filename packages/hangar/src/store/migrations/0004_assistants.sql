-- Assistant CRUD (run API issue, point 1). A version is a full snapshot of
-- the assistant, and the SDK's AssistantVersion carries a description too, so
-- `POST /assistants/{id}/latest` can restore every field. An assistant's
-- current state is written to assistant_versions when a change is about to
-- supersede it (assistants/repository.ts), not before.
ALTER TABLE assistant_versions ADD COLUMN description text;
