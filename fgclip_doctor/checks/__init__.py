"""Rules: `registry` plus one module per rule family by code range (temperature FGD1xx, negatives
and bank FGD2xx, schedule FGD3xx, resume FGD4xx, data FGD5xx, optim FGD6xx, loss_health FGD7xx).
Pure functions of Facts; imports only the ground floor (never sources/, probes/ or commands/)."""
