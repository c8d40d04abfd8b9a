-- Argo CD health check for sprintops.io/SprintRelease.
-- Install under resource.customizations.health.sprintops.io_SprintRelease (see README.md here).
local hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the sprintops operator to pick up the release"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local phase = obj.status.phase
local message = obj.status.message or phase
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Paused" then
  hs.status = "Suspended"
elseif phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
else
  -- Pending, Deploying, Progressing, RollingBack
  hs.status = "Progressing"
end
if obj.status.step ~= nil then
  message = phase .. " (step " .. obj.status.step .. "): " .. message
end
hs.message = message
return hs
