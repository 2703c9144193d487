"""The Azure Functions app: wiring only.

Triggers live in blueprints under ``orchestrators/``. Settings are read here once, so a
missing or bad setting fails the worker at start with a message naming the key, and
MusicGen starts loading in the background so ``/health`` turns healthy on its own.
"""

import azure.durable_functions as df

from orchestrators import activities, batch_trigger, generation_orchestrator, http_api, runtime

app = df.DFApp()
app.register_functions(http_api.bp)
app.register_functions(generation_orchestrator.bp)
app.register_functions(activities.bp)
app.register_functions(batch_trigger.bp)

runtime.check_configuration()
runtime.start_model_warmup()
